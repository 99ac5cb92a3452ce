"""Small torch/nnx layer and model pairs for ``parity_tests/test_bridge.py``.

Each :class:`LayerPair` builds a torch layer and its flax.nnx twin *with every setting
made to agree* (epsilons, momentum, padding, ``use_fast_variance=False``, float64
attention), and says how to feed them the same input: torch takes channels first
(``NCHW``), flax channels last (``NHWC``). :class:`TorchMixed` and :class:`NnxMixed` are a
model built from all of them, with ``nn.Sequential``/``nn.ModuleList`` nesting against
``nnx.Sequential``/``nnx.List``, attribute names alike, so the bridge maps it without a
rename.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

import torch_ref.nn as tnn
from jaxreg import nn as jnn
from torch_ref.bridge import attention_in_input_dtype

__all__ = ["LAYER_PAIRS", "LayerPair", "NnxMixed", "TorchMixed", "mixed_tokens"]


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def _channels_first(y: jax.Array) -> np.ndarray:
    return np.moveaxis(np.asarray(y), -1, 1)


def _identity(x):
    return x


def _zeros(key, shape, dtype=jnp.float32):
    """An nnx initializer for variables the copy overwrites: nothing to draw."""
    return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class LayerPair:
    """A torch layer and its nnx twin with agreeing settings.

    Attributes:
      name: the case id.
      build_torch: ``dtype -> torch module``.
      build_nnx: ``(dtype, rngs) -> nnx module``.
      inputs: ``(rng, numpy dtype) -> tuple of torch-layout inputs``.
      to_jax: a torch-layout input -> the nnx layout.
      from_jax: an nnx output -> torch's layout.
      torch_call: ``(module, *inputs) -> output``.
      differentiable: whether the inputs are floats (gradients taken with respect to them).
    """

    name: str
    build_torch: Callable[[torch.dtype], nn.Module]
    build_nnx: Callable[[Any, nnx.Rngs], nnx.Module]
    inputs: Callable[[np.random.Generator, type], tuple[np.ndarray, ...]]
    to_jax: Callable[[np.ndarray], np.ndarray] = _identity
    from_jax: Callable[[jax.Array], np.ndarray] = np.asarray
    torch_call: Callable[..., torch.Tensor] = lambda m, *xs: m(*xs)
    differentiable: bool = True


def _normal(*shape: int) -> Callable[[np.random.Generator, type], tuple[np.ndarray, ...]]:
    return lambda rng, dtype: (rng.standard_normal(shape).astype(dtype),)


def _conv(name, torch_build, nnx_build, shape) -> LayerPair:
    return LayerPair(name, torch_build, nnx_build, _normal(*shape), _channels_last, _channels_first)


def _attention_call(module: nn.MultiheadAttention, *xs: torch.Tensor) -> torch.Tensor:
    q, kv = (xs[0], xs[0]) if len(xs) == 1 else xs
    return module(q, kv, kv, need_weights=False)[0]


LAYER_PAIRS: list[LayerPair] = [
    LayerPair(
        "Linear",
        lambda td: nn.Linear(5, 4, dtype=td),
        lambda jd, rngs: nnx.Linear(5, 4, param_dtype=jd, kernel_init=_zeros, rngs=rngs),
        _normal(3, 5),
    ),
    LayerPair(
        "jaxreg.Linear",
        lambda td: tnn.Linear(5, 4, param_dtype=td),
        lambda jd, rngs: jnn.Linear(5, 4, param_dtype=jd, rngs=rngs),
        _normal(3, 5),
    ),
    _conv(
        "Conv1d",
        lambda td: nn.Conv1d(3, 4, 3, stride=2, padding=1, dtype=td),
        lambda jd, rngs: nnx.Conv(
            3, 4, (3,), strides=2, padding=[(1, 1)], param_dtype=jd, rngs=rngs
        ),
        (2, 3, 9),
    ),
    _conv(
        "Conv2d[groups,dilation]",
        lambda td: nn.Conv2d(
            4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, dtype=td
        ),
        lambda jd, rngs: nnx.Conv(
            4,
            6,
            (3, 2),
            strides=(2, 1),
            padding=[(1, 1), (0, 0)],
            kernel_dilation=(1, 2),
            feature_group_count=2,
            param_dtype=jd,
            rngs=rngs,
        ),
        (2, 4, 7, 6),
    ),  # fmt: skip
    _conv(
        "Conv3d",
        lambda td: nn.Conv3d(2, 3, 2, padding=1, dtype=td),
        lambda jd, rngs: nnx.Conv(2, 3, (2, 2, 2), padding=1, param_dtype=jd, rngs=rngs),
        (1, 2, 3, 4, 3),
    ),
    _conv(
        "ConvTranspose1d",
        lambda td: nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1, dtype=td),
        lambda jd, rngs: nnx.ConvTranspose(
            3, 4, (3,), strides=2, padding=[(1, 2)], param_dtype=jd, rngs=rngs
        ),
        (2, 3, 5),
    ),
    _conv(
        "ConvTranspose2d[transpose_kernel,dilation]",
        lambda td: nn.ConvTranspose2d(
            3, 2, (3, 2), stride=(2, 1), padding=(0, 1), dilation=(1, 2), dtype=td
        ),
        lambda jd, rngs: nnx.ConvTranspose(
            3,
            2,
            (3, 2),
            strides=(2, 1),
            padding=[(2, 2), (1, 1)],
            kernel_dilation=(1, 2),
            transpose_kernel=True,
            param_dtype=jd,
            rngs=rngs,
        ),
        (2, 3, 4, 5),
    ),  # fmt: skip
    _conv(
        "ConvTranspose3d",
        lambda td: nn.ConvTranspose3d(2, 2, 2, stride=2, dtype=td),
        lambda jd, rngs: nnx.ConvTranspose(
            2, 2, (2, 2, 2), strides=2, padding="VALID", param_dtype=jd, rngs=rngs
        ),
        (1, 2, 2, 3, 2),
    ),
    LayerPair(
        "Embedding",
        lambda td: nn.Embedding(10, 4, dtype=td),
        lambda jd, rngs: nnx.Embed(10, 4, param_dtype=jd, rngs=rngs),
        lambda rng, dtype: (rng.integers(0, 10, (3, 5)),),
        torch_call=lambda m, x: m(x),
        differentiable=False,
    ),
    LayerPair(
        "LayerNorm",
        lambda td: nn.LayerNorm(6, dtype=td),
        lambda jd, rngs: nnx.LayerNorm(
            6, epsilon=1e-5, use_fast_variance=False, param_dtype=jd, rngs=rngs
        ),
        _normal(3, 6),
    ),
    LayerPair(
        "RMSNorm",
        lambda td: nn.RMSNorm(6, eps=1e-6, dtype=td),
        lambda jd, rngs: nnx.RMSNorm(6, epsilon=1e-6, param_dtype=jd, rngs=rngs),
        _normal(3, 6),
    ),
    _conv(
        "GroupNorm",
        lambda td: nn.GroupNorm(2, 6, dtype=td),
        lambda jd, rngs: nnx.GroupNorm(
            6, num_groups=2, epsilon=1e-5, use_fast_variance=False, param_dtype=jd, rngs=rngs
        ),
        (2, 6, 5),
    ),
    LayerPair(
        "BatchNorm1d",
        lambda td: nn.BatchNorm1d(4, dtype=td),
        lambda jd, rngs: nnx.BatchNorm(
            4, momentum=0.9, use_fast_variance=False, param_dtype=jd, rngs=rngs
        ),
        _normal(5, 4),
    ),
    _conv(
        "BatchNorm2d",
        lambda td: nn.BatchNorm2d(3, dtype=td),
        lambda jd, rngs: nnx.BatchNorm(
            3, momentum=0.9, use_fast_variance=False, param_dtype=jd, rngs=rngs
        ),
        (2, 3, 4, 2),
    ),
    _conv(
        "BatchNorm3d",
        lambda td: nn.BatchNorm3d(2, dtype=td),
        lambda jd, rngs: nnx.BatchNorm(
            2, momentum=0.9, use_fast_variance=False, param_dtype=jd, rngs=rngs
        ),
        (2, 2, 2, 3, 2),
    ),
    LayerPair(
        "MultiheadAttention",
        lambda td: nn.MultiheadAttention(8, 2, batch_first=True, dtype=td),
        lambda jd, rngs: nnx.MultiHeadAttention(
            2,
            8,
            attention_fn=attention_in_input_dtype,
            decode=False,
            param_dtype=jd,
            rngs=rngs,
        ),
        _normal(2, 5, 8),
        torch_call=_attention_call,
    ),  # fmt: skip
    LayerPair(
        "MultiheadAttention[kdim,vdim]",
        lambda td: nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True, dtype=td),
        lambda jd, rngs: nnx.MultiHeadAttention(
            2,
            8,
            in_kv_features=6,
            attention_fn=attention_in_input_dtype,
            decode=False,
            param_dtype=jd,
            rngs=rngs,
        ),
        lambda rng, dtype: (
            rng.standard_normal((2, 5, 8)).astype(dtype),
            rng.standard_normal((2, 4, 6)).astype(dtype),
        ),
        torch_call=_attention_call,
    ),  # fmt: skip
]


# --------------------------------------------------------------------------- a mixed model

VOCAB, WIDTH, HIDDEN, CHANNELS, HEADS = 11, 8, 12, 6, 2


class TorchMixed(nn.Module):
    """Every layer the bridge knows, nested in ``nn.ModuleList`` and ``nn.Sequential``."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH, dtype=dtype)
        self.norm = nn.LayerNorm(WIDTH, dtype=dtype)
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True, dtype=dtype)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(WIDTH, HIDDEN, dtype=dtype),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(HIDDEN, WIDTH, dtype=dtype),
            )
            for _ in range(2)
        )
        self.rms = nn.RMSNorm(WIDTH, eps=1e-6, dtype=dtype)
        self.ff = tnn.SwiGLUFeedForward(WIDTH, HIDDEN, param_dtype=dtype)
        self.conv = nn.Sequential(
            nn.Conv1d(WIDTH, CHANNELS, 3, padding=1, dtype=dtype),
            nn.BatchNorm1d(CHANNELS, dtype=dtype),
            nn.ReLU(),
            nn.ConvTranspose1d(
                CHANNELS, CHANNELS, 3, stride=2, padding=1, output_padding=1, dtype=dtype
            ),
            nn.GroupNorm(2, CHANNELS, dtype=dtype),
        )
        self.head = tnn.MLP([CHANNELS, HIDDEN, VOCAB], param_dtype=dtype)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(tokens))
        x = x + self.attn(x, x, x, need_weights=False)[0]
        for block in self.blocks:
            x = x + block(x)
        x = self.ff(self.rms(x))
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)  # torch convolves (N, C, L)
        return self.head(x)


class NnxMixed(nnx.Module):
    """The flax.nnx twin of :class:`TorchMixed`, with every setting made to agree."""

    def __init__(self, dtype: jnp.dtype = jnp.float64, *, rngs: nnx.Rngs) -> None:
        p: dict[str, Any] = {"param_dtype": dtype, "rngs": rngs}
        exact: dict[str, Any] = {"epsilon": 1e-5, "use_fast_variance": False}
        self.embed = nnx.Embed(VOCAB, WIDTH, **p)
        self.norm = nnx.LayerNorm(WIDTH, **exact, **p)
        self.attn = nnx.MultiHeadAttention(
            HEADS, WIDTH, attention_fn=attention_in_input_dtype, decode=False, **p
        )
        self.blocks = nnx.List(
            [
                nnx.Sequential(
                    nnx.Linear(WIDTH, HIDDEN, **p),
                    functools.partial(nnx.gelu, approximate=False),
                    nnx.Dropout(0.1, rngs=rngs),
                    nnx.Linear(HIDDEN, WIDTH, **p),
                )
                for _ in range(2)
            ]
        )
        self.rms = nnx.RMSNorm(WIDTH, epsilon=1e-6, **p)
        self.ff = jnn.SwiGLUFeedForward(WIDTH, HIDDEN, **p)
        self.conv = nnx.Sequential(
            nnx.Conv(WIDTH, CHANNELS, (3,), padding=[(1, 1)], **p),
            nnx.BatchNorm(CHANNELS, momentum=0.9, **exact, **p),
            nnx.relu,
            nnx.ConvTranspose(CHANNELS, CHANNELS, (3,), strides=2, padding=[(1, 2)], **p),
            nnx.GroupNorm(CHANNELS, num_groups=2, **exact, **p),
        )
        self.head = jnn.MLP([CHANNELS, HIDDEN, VOCAB], **p)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.norm(self.embed(tokens))
        x = x + self.attn(x)
        for block in self.blocks:
            x = x + block(x)
        x = self.ff(self.rms(x))
        return self.head(self.conv(x))


def mixed_tokens(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, VOCAB, (2, 5))
