"""Sphinx configuration of the jaxreg API reference site.

Build (from the repository root; warnings are errors, as in CI)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

The pages are Markdown (MyST) and reStructuredText. The API pages (api/*.rst) name each
public object once and autodoc renders its docstring (Google style, read by napoleon);
tests/test_docs.py fails when a name of ``jaxreg.__all__`` is missing there. The README's
sections are included, never copied, so the site and the README cannot drift.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path

from docutils import nodes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # jaxreg, torch_ref and parity_tests from this checkout

import jaxreg  # noqa: E402

project = "jaxreg"
author = "the jaxreg authors"
copyright = "the jaxreg authors"  # noqa: A001 (Sphinx's name)
release = jaxreg.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# --- autodoc and napoleon -------------------------------------------------------------
# The public functions are wrapped by `jaxreg._numerics.compiled` (functools.wraps around
# jax.jit): autodoc follows `__wrapped__`, so it shows the function's own signature.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # not torch.nn.Module.forward's generic text
# Shown by name rather than expanded into their eight-member unions.
autodoc_type_aliases = {
    "ArrayLike": "jax.typing.ArrayLike",
    "DTypeLike": "jax.typing.DTypeLike",
}
autosummary_generate = False  # summary tables only; every page is written by hand

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: no second target next to autodoc's
napoleon_use_rtype = False

# --- MyST -----------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# --- doctest --------------------------------------------------------------------------
# The docstrings' examples are run by pytest (`--doctest-modules`); this builder runs the
# examples written on the pages, which are all explicit `doctest` directives.
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import jax
import jax.numpy as jnp
import numpy as np
"""

# --- HTML -----------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = f"jaxreg {release}"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
}


# --- cross-references -----------------------------------------------------------------
# The reference documents each public function once, under the name users call it by
# (`jaxreg.softmax`); the few names public in a module but not re-exported are documented
# under their module (`jaxreg.solvers.SolverInfo`). Docstrings also cite the defining
# module (`jaxreg.information.softmax`) or a bare name (`SolverInfo` inside
# `jaxreg.solvers`): such references resolve to the documented name.

MODULES = sorted({getattr(jaxreg, name).__module__ for name in jaxreg.__all__})
DOCUMENTED = {
    name: f"{module}.{name}"
    for module in MODULES
    for name in getattr(importlib.import_module(module), "__all__", ())
} | {name: f"jaxreg.{name}" for name in jaxreg.__all__}


def _resolve_public_name(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    module = node.get("py:module") or ""
    full = target if target.startswith("jaxreg.") else f"{module}.{target}"
    documented = DOCUMENTED.get(full.rsplit(".", 1)[-1])
    if not full.startswith("jaxreg.") or documented is None or documented == full:
        return None
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode
    )


# --- constructor signatures -----------------------------------------------------------
# flax.nnx modules are built through their metaclass's `__call__(*args, **kwargs)`, which
# autodoc shows as the class signature; show the class's own `__init__` instead, with the
# defaults as written in the source (`param_dtype=jnp.float32`).


class _SourceText(str):
    """A default value that prints as the source text it was written with."""

    def __repr__(self) -> str:
        return str(self)


def _source_defaults(function) -> dict[str, str]:
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    pairs = [
        *zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True),
        *zip(args.kwonlyargs, args.kw_defaults, strict=True),
    ]
    return {arg.arg: ast.unparse(default) for arg, default in pairs if default is not None}


def _constructor_signature(app, what, name, obj, options, signature, return_annotation):
    if what != "class" or signature != "(*args, **kwargs)" or "__init__" not in vars(obj):
        return None
    init = obj.__init__
    sig = inspect.signature(init)
    defaults = _source_defaults(init)
    params = [
        p.replace(
            annotation=p.empty,
            default=_SourceText(defaults[p.name]) if p.name in defaults else p.default,
        )
        for p in list(sig.parameters.values())[1:]  # without `self`
    ]
    return str(sig.replace(parameters=params, return_annotation=sig.empty)), None


# --- type aliases in unions -------------------------------------------------------------
# Sphinx 9 prints an alias of `autodoc_type_aliases` inside a union as
# `TypeAliasForwardRef('jax.typing.ArrayLike') | None`. The types autodoc adds to the
# parameter descriptions are plain text until the info fields are transformed (after
# this event), so the alias's name is put back there.

_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('([^']*)'\)")


def _unwrap_alias_refs(app, domain, objtype, content):
    for text in list(content.findall(nodes.Text)):
        if "TypeAliasForwardRef(" in text:
            text.parent.replace(text, nodes.Text(_FORWARD_REF.sub(r"\1", text.astext())))


def setup(app):
    app.connect("missing-reference", _resolve_public_name)
    app.connect("autodoc-process-signature", _constructor_signature)
    # after autodoc's own handler (priority 500), which adds the types
    app.connect("object-description-transform", _unwrap_alias_refs, priority=600)
