"""The API reference site (docs/): complete, built without a warning, its examples run.

The fast tests read the page sources: every public name has an entry on the page of the
module that defines it, and every README section the pages include is found exactly
once. The slow tests run Sphinx in a subprocess, as CI does: the HTML build with
warnings as errors (then the rendered signatures are checked against the functions,
through the ``jax.jit`` wrapper of ``jaxreg._numerics.compiled``), and the doctest
builder, which runs the examples written on the pages (the docstrings' examples are run
by pytest's ``--doctest-modules``, the README's by tests/test_readme.py).
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxreg
import torch_ref

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
README = (ROOT / "README.md").read_text()

#: jaxreg's modules, in the order of the reference (one page each).
MODULES = [
    "norms", "penalties", "information", "losses", "activations", "init", "nn", "optim",
    "proximal", "convergence", "diagnostics", "solvers", "fused",
]  # fmt: skip


def _defining_module(name: str) -> str:
    return getattr(jaxreg, name).__module__.removeprefix("jaxreg.")


def _documented(page: Path) -> list[str]:
    """The full names of the objects a page documents with ``autofunction``/``autoclass``,
    resolved against its ``currentmodule`` directives."""
    names, module = [], ""
    for line in page.read_text().splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = m[1]
        elif m := re.match(r"\.\. auto(?:function|class):: (\S+)", line):
            names.append(f"{module}.{m[1]}" if module else m[1])
    return names


# ------------------------------------------------------------------ page sources


def test_every_module_has_a_page_in_the_reference():
    assert {_defining_module(name) for name in jaxreg.__all__} == set(MODULES)
    index = (API / "index.rst").read_text()
    toctree = re.findall(r"^   (\w+)$", index, flags=re.M)
    assert toctree == MODULES, "docs/api/index.rst's toctree must list every module page"
    for module in MODULES:
        assert (API / f"{module}.rst").exists(), f"docs/api/{module}.rst is missing"


@pytest.mark.parametrize("module", MODULES)
def test_module_page_documents_its_public_names(module):
    """Each name of ``jaxreg.__all__`` once, as ``jaxreg.<name>``, on its module's page;
    a name public in the module only (its ``__all__``) under ``jaxreg.<module>.<name>``."""
    page = API / f"{module}.rst"
    mod = importlib.import_module(f"jaxreg.{module}")
    top = {f"jaxreg.{n}" for n in jaxreg.__all__ if _defining_module(n) == module}
    own = {f"jaxreg.{module}.{n}" for n in getattr(mod, "__all__", ()) if n not in jaxreg.__all__}
    documented = _documented(page)
    duplicates = sorted({n for n in documented if documented.count(n) > 1})
    assert not duplicates, f"{page.name} documents these twice: {duplicates}"
    missing = sorted((top | own) - set(documented))
    stale = sorted(set(documented) - top - own)
    assert not missing, f"add `.. autofunction::`/`.. autoclass::` to {page.name}: {missing}"
    assert not stale, f"{page.name} documents names that are not public there: {stale}"
    assert f".. automodule:: jaxreg.{module}\n" in page.read_text()


def test_torch_ref_page_covers_every_module_and_the_bridge():
    page = (API / "torch_ref.rst").read_text()
    documented = re.findall(r"^\.\. automodule:: (torch_ref\.\w+)\n   :members:$", page, re.M)
    modules = {getattr(torch_ref, n).__module__ for n in torch_ref.__all__}
    assert set(documented) == modules | {"torch_ref.bridge"}


def _includes() -> list[tuple[str, dict[str, str]]]:
    """``(page, options)`` of every MyST ``{include}`` of the README on the pages."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        for block in re.findall(
            r"```\{include\} \.\./README\.md\n(.*?)```", page.read_text(), re.S
        ):
            options = dict(re.findall(r"^:([\w-]+): (.*)$", block, flags=re.M))
            # the values are YAML double-quoted strings: undo their escapes
            found.append(
                (page.name, {k: v.strip('"').replace("\\n", "\n") for k, v in options.items()})
            )
    return found


def test_pages_include_the_readme_sections():
    pages = {page for page, _ in _includes()}
    assert {"index.md", "tour.md", "conventions.md", "parity_report.md"} <= pages


@pytest.mark.parametrize(
    "page, options", _includes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_readme_markers_are_found_once_and_in_order(page, options):
    """A renamed or duplicated README heading fails here, with the page to fix."""
    start, end = options["start-after"], options["end-before"]
    for marker in (start, end):
        assert README.count(marker) == 1, f"{page}: {marker!r} must occur once in README.md"
    assert README.index(start) < README.index(end), f"{page}: {start!r} comes after {end!r}"


# ------------------------------------------------------------------ Sphinx builds

MISSING = [
    m for m in ("sphinx", "myst_parser", "sphinx_book_theme") if not importlib.util.find_spec(m)
]
needs_sphinx = pytest.mark.skipif(
    bool(MISSING),
    reason=f"the docs need {', '.join(MISSING)}: `pip install -e '.[docs]'` (in the `dev` extra)",
)


def _sphinx(builder: str, out: Path, doctrees: Path) -> None:
    command = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-j", "1", "-q",
        "-b", builder, "-d", str(doctrees), str(DOCS), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = f"{' '.join(command[1:])} failed:\n{done.stdout[-8000:]}\n{done.stderr[-8000:]}"
    assert done.returncode == 0, report


@pytest.fixture(scope="module")
def doctrees(tmp_path_factory) -> Path:
    """One environment for both builders (the sources are read once per process)."""
    return tmp_path_factory.mktemp("doctrees")


def _signature_params(html_page: str, full_name: str) -> list[str] | None:
    """The parameter names (with ``*`` and ``/``) in the rendered signature of ``full_name``."""
    m = re.search(
        rf'<dt class="sig sig-object py" id="{re.escape(full_name)}">(.*?)</dt>', html_page, re.S
    )
    if m is None:
        return None
    params = re.findall(r'<em class="sig-param">(.*?)</em>', m[1], re.S)
    texts = [html.unescape(re.sub(r"<[^>]+>", "", p)) for p in params]
    return [t.split("=")[0] for t in texts]


def _expected_params(obj) -> list[str]:
    """What the signature must show: the function's own (``inspect`` follows the jit
    wrapper's ``__wrapped__``), a class's ``__init__`` without ``self``."""
    if inspect.isclass(obj) and not issubclass(obj, tuple):
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]
    else:
        params = list(inspect.signature(obj).parameters.values())
    names: list[str] = []
    for i, p in enumerate(params):
        previous = params[i - 1].kind if i else None
        if p.kind is p.KEYWORD_ONLY and previous not in (p.KEYWORD_ONLY, p.VAR_POSITIONAL):
            names.append("*")
        if previous is p.POSITIONAL_ONLY and p.kind is not p.POSITIONAL_ONLY:
            names.append("/")
        names.append({p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name)
    if params and params[-1].kind is p.POSITIONAL_ONLY:
        names.append("/")
    return names


@pytest.mark.slow
@needs_sphinx
def test_html_builds_without_warnings_and_shows_every_signature(tmp_path, doctrees):
    _sphinx("html", tmp_path / "html", doctrees)
    for name in jaxreg.__all__:
        obj = getattr(jaxreg, name)
        page = (tmp_path / "html" / "api" / f"{_defining_module(name)}.html").read_text()
        shown = _signature_params(page, f"jaxreg.{name}")
        assert shown is not None, f"no entry for jaxreg.{name}"
        assert shown == _expected_params(obj), f"jaxreg.{name}: signature shown as {shown}"
        entry = page[page.index(f'id="jaxreg.{name}"') :]
        entry = html.unescape(re.sub(r"<[^>]+>", "", entry[: entry.index("</dd>")]))
        first_line = re.sub(r":\w+:", "", inspect.getdoc(obj).splitlines()[0])  # roles
        summary = re.findall(r"[A-Za-z]\w+", first_line)[:4]
        assert summary and re.search(".*?".join(summary), entry, re.S), (
            f"jaxreg.{name}: no docstring"
        )


@pytest.mark.slow
@needs_sphinx
def test_page_examples_run(tmp_path, doctrees):
    _sphinx("doctest", tmp_path / "doctest", doctrees)
    output = (tmp_path / "doctest" / "output.txt").read_text()
    ran = re.search(r"^\s*(\d+) tests\n\s*0 failures in tests$", output, re.M)
    assert ran and int(ran[1]) > 0, output
