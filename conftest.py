"""Test configuration shared by ``tests/``, ``parity_tests/`` and the doctests.

float64 is enabled for the whole session (float32 tests pass float32 arrays
explicitly), matmuls run at full precision, and silent dtype promotion or rank
broadcasting fails loudly, as in equinox's test-suite.
"""

import os

#: Test-only XLA flags, set here and nowhere else. They compile the suite's ~2000 small
#: programs in about half the time (measured: 82 s instead of 132 s for the norms,
#: information, losses and transformation tests): LLVM's optimization level changes
#: speed, not floating-point semantics (no fast-math either way), and XLA's older
#: elemental emitters compile fusions faster than the MLIR fusion emitters; results agree
#: to rounding. A flag the user already set is left alone. If a jaxlib upgrade drops one,
#: XLA stops at start-up with "Unknown flags in XLA_FLAGS" naming it: delete it here.
#: What users run is tested with XLA's defaults too: the parity report (`.ci/run` runs
#: `python -m parity_tests` as a step of its own), the benchmarks, and the 8-device
#: subprocess of tests/test_sharded.py, which drops the flags recorded in
#: JAXREG_TEST_XLA_FLAGS.
TEST_XLA_FLAGS = {"--xla_backend_optimization_level": "0", "--xla_cpu_use_fusion_emitters": "false"}

# One thread per test process for torch and BLAS: the suite runs two processes on two
# cores (pytest-xdist), and tiny torch operations are many times slower with more
# threads than cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Set once, in the controlling process, before pytest-xdist starts its workers (they
# inherit the environment).
if "JAXREG_TEST_XLA_FLAGS" not in os.environ:
    _user = os.environ.get("XLA_FLAGS", "")
    _set = {flag.split("=")[0] for flag in _user.split()}
    _added = [f"{k}={v}" for k, v in TEST_XLA_FLAGS.items() if k not in _set]
    os.environ["JAXREG_TEST_XLA_FLAGS"] = " ".join(_added)
    os.environ["XLA_FLAGS"] = " ".join([_user, *_added]).strip()

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
