"""The harness itself: it leaves the caller's settings alone and compares what it says."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import jaxreg
import torch_ref
from parity_tests.harness import cast_input, compare


def test_import_and_compare_leave_the_callers_settings_alone():
    """Importing the harness (and comparing in float64) does not switch on float64 or
    full-precision matmuls for the whole process, nor change torch's TF32 flags."""
    code = (
        "import jax, torch\n"
        "from parity_tests.harness import compare\n"
        "import jaxreg, torch_ref, numpy as np\n"
        "before = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision,\n"
        "          torch.backends.cuda.matmul.allow_tf32)\n"
        "r = compare(jaxreg.logsumexp, torch_ref.logsumexp, [np.ones((2, 3))], dtype='float64')\n"
        "assert r.passed, r\n"
        "after = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision,\n"
        "         torch.backends.cuda.matmul.allow_tf32)\n"
        "assert before == after == (False, None, before[2]), (before, after)\n"
        "import jax.numpy as jnp; assert jnp.zeros(1).dtype == jnp.float32\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_subnormal_inputs_are_flushed_on_both_sides():
    """Inputs that are subnormal in the compared dtype become 0 for both frameworks (XLA
    flushes them in some operations only), so a generated 1e-40 cannot turn a run red."""
    x = np.array([1e-40, -1e-45, 1e-300, 2.0, np.nan])
    np.testing.assert_array_equal(cast_input(x, "float32"), [0.0, 0.0, 0.0, 2.0, np.nan])
    np.testing.assert_array_equal(cast_input(x, "float64")[:2], x[:2])
    result = compare(
        jaxreg.leaky_relu, torch_ref.leaky_relu, [np.array([1e-40, -3.0])], dtype="float32"
    )
    assert result.passed, result
