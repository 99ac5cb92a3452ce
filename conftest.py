"""Test configuration shared by ``tests/``, ``parity_tests/`` and the doctests.

float64 is enabled for the whole session (float32 tests pass float32 arrays
explicitly), matmuls run at full precision, and silent dtype promotion or rank
broadcasting fails loudly, as in equinox's test-suite.
"""

import os
import subprocess
import sys
from importlib.metadata import version

#: XLA flags that compile the suite's ~1600 small programs in about half the time.
#: LLVM's optimization level changes speed, not floating-point semantics (no fast-math
#: either way), and XLA's older elemental emitters compile fusions in half the time of
#: the newer MLIR fusion emitters; results agree to rounding. The parity report (the
#: README's main job), the benchmarks and tests/test_sharded.py's subprocess run with
#: XLA's defaults.
_FAST_COMPILE = {"--xla_backend_optimization_level": "0", "--xla_cpu_use_fusion_emitters": "false"}


def _fast_compile_flags(user_flags: str) -> list[str]:
    """The flags of ``_FAST_COMPILE`` that ``user_flags`` leaves unset and jaxlib accepts.

    XLA aborts on a flag it does not know, so the emitter flag is checked once, in a
    subprocess, on jaxlib versions other than the one it was measured with.
    """
    names = {flag.split("=")[0] for flag in user_flags.split()}
    flags = [f"{name}={value}" for name, value in _FAST_COMPILE.items() if name not in names]
    emitters = "--xla_cpu_use_fusion_emitters"
    if emitters not in names and not version("jaxlib").startswith("0.10."):
        probe = subprocess.run(
            [sys.executable, "-c", "import jax; jax.devices('cpu')"],
            env={**os.environ, "XLA_FLAGS": " ".join([user_flags, *flags]), "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            timeout=120,
        )
        if probe.returncode != 0:
            flags = [flag for flag in flags if not flag.startswith(emitters)]
    return flags


# One thread per test process for torch and BLAS: the suite runs two processes on two
# cores (pytest-xdist), and tiny torch operations are many times slower with more
# threads than cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Decided once, in the controlling process, before pytest-xdist starts its workers: they
# inherit both variables. JAXREG_TEST_XLA_FLAGS records what was added to the user's
# XLA_FLAGS, for the tests that need XLA's defaults back.
if "JAXREG_TEST_XLA_FLAGS" not in os.environ:
    _added = _fast_compile_flags(os.environ.get("XLA_FLAGS", ""))
    os.environ["JAXREG_TEST_XLA_FLAGS"] = " ".join(_added)
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_added]).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hypothesis import settings  # noqa: E402

#: Generated inputs are the same on every run ("derandomized") and no failing example
#: is replayed from a local database: a run is red because of the code, never because
#: of a draw or of a file left by an earlier run. `pytest --hypothesis-profile=explore`
#: draws new examples (and remembers failures) when hunting for bugs.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=200)
settings.load_profile("ci")

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's name, so every test is reproducible."""
    seed = sum(map(ord, request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)


@pytest.fixture
def getkey(rng):
    """Fresh ``jax.random`` keys, seeded per test (equinox's ``getkey`` pattern)."""

    def _getkey() -> jax.Array:
        return jax.random.key(int(rng.integers(0, 2**31 - 1)))

    return _getkey


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    import jax.numpy as jnp

    doctest_namespace.update(jax=jax, jnp=jnp, np=np)


#: The longest tests (dozens of compilations each, or a subprocess) run first, so that
#: the two xdist workers finish together instead of one waiting for the other's last
#: long test.
_SLOW_FIRST = (
    "tests/test_readme.py",
    "tests/test_sharded.py",
    "tests/test_examples.py",
    "tests/test_docs.py",
)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(_SLOW_FIRST))


def pytest_sessionstart(session):
    # Tracing makes many short-lived cyclic objects: collect the young generation less
    # often, and never rescan what was imported before the first test.
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
