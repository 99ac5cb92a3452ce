"""The multi-device checks of ``tests/sharded_check.py`` on 8 simulated CPU devices.

They run in a subprocess: ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` only
takes effect before JAX starts, and this process's JAX (one device) must stay as it is
for the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_vocab_and_data_parallel_match_one_device():
    env = dict(os.environ)
    # XLA's default code generation: the flags conftest.py added to compile faster are
    # dropped, so that one part of the suite runs what users run.
    added = set(env.get("JAXREG_TEST_XLA_FLAGS", "").split())
    flags = [f for f in env.get("XLA_FLAGS", "").split() if f not in added]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=8"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sharded_check.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-5000:]}"
    assert "all sharded checks passed" in done.stdout
