"""Parity of :mod:`jaxreg.init` with :mod:`torch_ref.init` and ``torch.nn.init``.

Fans equal torch's ``_calculate_fan_in_and_fan_out`` for Linear and conv shapes in
both layouts (report rows). Random streams differ between the frameworks, so the
initializers are compared by their statistics only: jaxreg's samples, torch_ref's
and raw ``torch.nn.init``'s of the same shape each pass a Kolmogorov-Smirnov test
against the exact distribution, match its mean, variance and bounds, and pass a
two-sample KS test against each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreg import init as ji
from parity_tests._shared import INITS, LAYOUTS, assert_distribution, expected_scale
from parity_tests.harness import ParityCase, check_case
from torch_ref import init as ti

#: (shape in jaxreg's default layout (…, in, out), the same weight in torch's layout)
SHAPES = [
    ((3, 5), (5, 3)),  # Linear
    ((7, 16, 32), (32, 16, 7)),  # conv1d
    ((3, 3, 16, 32), (32, 16, 3, 3)),  # conv2d
    ((2, 3, 4, 5, 6), (6, 5, 2, 3, 4)),  # conv3d
]


def torch_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))


def fans_case(tag: str, jax_fans, torch_fans_fn, reference: str) -> ParityCase:
    return ParityCase(
        f"init.fan_in_and_fan_out[{tag}]",
        lambda: jnp.asarray([jax_fans(s) for s in SHAPES]),
        lambda: torch.tensor([torch_fans_fn(s) for s in SHAPES]),
        lambda rng: (),
        grad_argnums=(),
        reference=reference,
    )


#: torch's own layout, ``(out, in)`` or ``(out, in, *window)``, as jaxreg axes.
TORCH_AXES = {"in_axis": 1, "out_axis": 0}


CASES = [
    # jaxreg's layout on both sides
    fans_case(
        "jax layout",
        lambda s: ji.fan_in_and_fan_out(s[0]),
        lambda s: ti.fan_in_and_fan_out(s[0]),
        "torch_ref",
    ),
    # torch's layout: jaxreg with explicit axes against torch's own function
    fans_case(
        "torch layout",
        lambda s: ji.fan_in_and_fan_out(s[1], **TORCH_AXES),
        lambda s: torch_fans(s[1]),
        "torch",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: ParityCase) -> None:
    check_case(case)


@pytest.mark.parametrize("jax_shape, torch_shape", SHAPES)
def test_fans_agree_across_layouts(jax_shape, torch_shape) -> None:
    expected = torch_fans(torch_shape)
    assert ji.fan_in_and_fan_out(jax_shape) == expected
    assert ji.fan_in_and_fan_out(torch_shape, **TORCH_AXES) == expected
    assert ti.fan_in_and_fan_out(jax_shape) == expected
    assert ti.fan_in_and_fan_out(torch_shape, **TORCH_AXES) == expected


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=5))
def test_generated_fans_equal_torch(shape: list[int]) -> None:
    """Linear ``(out, in)`` is ``in_axis=-1, out_axis=-2``, conv ``in_axis=1, out_axis=0``."""
    expected = torch_fans(tuple(shape))
    assert ji.fan_in_and_fan_out(shape, **TORCH_AXES) == expected
    if len(shape) == 2:
        assert ji.fan_in_and_fan_out(shape, in_axis=-1, out_axis=-2) == expected


# --------------------------------------------------------------------------- statistics

GAIN = 1.3


def raw_torch_sample(name: str, shape: tuple[int, ...], generator: torch.Generator):
    """``torch.nn.init`` itself, on a tensor in torch's layout."""
    w = torch.empty(shape, dtype=torch.float32)
    if name.startswith("xavier"):
        getattr(torch.nn.init, f"{name}_")(w, GAIN, generator=generator)
    else:  # torch's gain for nonlinearity='leaky_relu' with slope a is √(2 / (1 + a²))
        a = float(np.sqrt(2.0 / GAIN**2 - 1.0))
        getattr(torch.nn.init, f"{name}_")(w, a, generator=generator)
    return w.numpy()


@pytest.mark.parametrize("name", INITS)
def test_samples_have_the_same_statistics(name: str) -> None:
    jax_shape, jax_axes, fan_in, fan_out = LAYOUTS["dense"]
    torch_shape = jax_shape[::-1]
    generator = torch.Generator().manual_seed(0)
    samples = {
        "jaxreg": getattr(ji, name)(GAIN)(jax.random.key(0), jax_shape, jnp.float32),
        "torch_ref": getattr(ti, name)(GAIN)(generator, jax_shape, torch.float32),
        "torch": raw_torch_sample(name, torch_shape, generator),
    }
    distribution, scale = expected_scale(name, GAIN, fan_in, fan_out)
    for where, w in samples.items():
        assert tuple(w.shape) == (jax_shape if where != "torch" else torch_shape), where
        assert_distribution(np.asarray(w), distribution, scale)
    jax_sample = np.asarray(samples["jaxreg"], dtype=np.float64).ravel()
    torch_sample = np.asarray(samples["torch"], dtype=np.float64).ravel()
    assert scipy.stats.ks_2samp(jax_sample, torch_sample).pvalue > 1e-3


@pytest.mark.parametrize("name", ["xavier_uniform", "kaiming_normal"])
def test_conv_layouts_have_the_same_statistics(name: str) -> None:
    """torch's conv layout ``(out, in, kh, kw)`` on both sides, fans from the named axes."""
    torch_shape, axes, fan_in, fan_out = LAYOUTS["conv_torch"]
    generator = torch.Generator().manual_seed(1)
    distribution, scale = expected_scale(name, GAIN, fan_in, fan_out)
    assert_distribution(
        getattr(ti, name)(GAIN, **axes)(generator, torch_shape), distribution, scale
    )
    assert_distribution(raw_torch_sample(name, torch_shape, generator), distribution, scale)


def test_torch_ref_kaiming_defaults_are_torch_defaults() -> None:
    generator = torch.Generator().manual_seed(2)
    shape = LAYOUTS["dense"][0]
    for name in ("kaiming_uniform", "kaiming_normal"):
        ours = getattr(ti, name)()(generator, shape)
        theirs = torch.empty(shape[::-1])
        getattr(torch.nn.init, f"{name}_")(theirs, generator=generator)  # a=0, leaky_relu
        expected = expected_scale(name, np.sqrt(2.0), *shape)
        assert_distribution(ours, *expected)
        assert_distribution(theirs, *expected)
