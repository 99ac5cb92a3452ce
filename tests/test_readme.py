"""The README's Python snippets run as written (so the tour never goes stale)."""

from __future__ import annotations

import re
from pathlib import Path

import jax

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_a_tour():
    assert len(BLOCKS) >= 2


def test_readme_blocks_run_in_order():
    # The snippets are user code: run them with jax's default promotion rules and in one
    # namespace, in order, as a reader pasting them into a session would.
    namespace: dict = {}
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for index, block in enumerate(BLOCKS):
            exec(compile(block, f"README.md block {index}", "exec"), namespace)
