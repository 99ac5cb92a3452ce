"""Smoke tests of ``examples/``: each runs in quick mode and writes its figures; twins agree."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

#: ``examples`` is a folder of scripts at the repository root, not an installed package.
ROOT = Path(__file__).resolve().parents[1]

#: example module -> the figures (PNG names) it writes.
FIGURES = {
    "norm_convergence": ["norm_convergence"],
    "port_torch_model": ["port_torch_model"],
    "seed000_entropy_training": ["seed000_entropy_training"],
    "seed000_five_entropies": ["seed000_five_entropies"],
    "seed000_regularized_regression": ["seed000_regularized_regression", "solution_space"],
    "seed001_classification": ["seed001_classification"],
    "seed001_deep_nets": ["seed001_deep_nets"],
    "seed001_linear_regression": ["seed001_linear_regression"],
    "seed001_weight_decay": ["seed001_weight_decay"],
    "seed002_information": ["seed002_information", "seed002_activations", "seed002_swiglu"],
    "seed003_weight_decay_sin": ["seed003_weight_decay_sin"],
    "seed004_sparsity": ["seed004_sparsity", "ridge_lasso_paths"],
    "solution_space": ["solution_space", "ridge_lasso_paths"],
}


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def assert_figure(path) -> None:
    """``path`` is a PNG of a real figure: not tiny, not blank, several colours."""
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert height >= 150 and width >= 250, (path, image.shape)
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).min() > 0.02, f"{path} looks blank"
    assert len(np.unique(np.round(rgb * 8), axis=0)) >= 8, f"{path} has too few colours"


def run_example(name: str, out: Path, *flags: str):
    """Runs ``examples.<name>`` in quick mode, checks its figures, returns what ``main`` returns."""
    module = importlib.import_module(f"examples.{name}")
    result = module.main(["--quick", "--out", str(out), *flags])
    written = sorted(p.stem for p in out.glob("*.png"))
    assert written == sorted(FIGURES[name])
    for stem in written:
        assert_figure(out / f"{stem}.png")
    return result


@pytest.mark.parametrize(
    "name", sorted(set(FIGURES) - {"seed003_weight_decay_sin", "port_torch_model"})
)
def test_example_writes_its_figures(name, tmp_path):
    run_example(name, tmp_path)


def test_seed003_figures_and_torch_twin_in_float64(tmp_path):
    """The seed 003 curves of JAX and torch, from the same weights, agree to 1e-10."""
    pytest.importorskip("torch")
    differences = run_example("seed003_weight_decay_sin", tmp_path, "--torch")
    assert set(differences) == {"loss", "test", "norm"}
    assert max(differences.values()) <= 1e-10, differences


def test_port_torch_model_agrees_and_localizes_the_bug(tmp_path):
    """The ported LLaMA-style model: forward, loss and every parameter gradient within the
    float64 tolerance, AdamW steps within the trajectory tolerance, and the injected bug
    named at its layer with every earlier layer agreeing."""
    result = run_example("port_torch_model", tmp_path)
    assert result["forward"]["float64"].passed
    assert len(result["forward"]["float64"].grads) == 20  # every parameter, attention split
    assert result["trajectory"].passed and result["trajectory"].max_rel <= 1e-10
    found = result["bugs"]["rmsnorm_eps"].first_divergence
    assert found.torch_name == "blocks.1.ffn_norm" and found.inputs_passed
