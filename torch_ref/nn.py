"""PyTorch twin of :mod:`jaxreg.nn`: ``Linear``, ``SwiGLUFeedForward``, ``MLP``, ``dropout``.

``torch.nn`` modules with the same constructor arguments and the same parameter
names as the nnx modules (``w1, w2, w3``; ``layers.<i>``), so
:mod:`torch_ref.bridge` copies weights across by name. ``Linear`` is
``nn.Linear`` with jaxreg's initialization (Xavier-uniform weight, zero bias)
instead of torch's default (Kaiming-uniform with ``a=√5``, uniform bias), a
selectable ``kernel_init``/``bias_init`` (torch's in-place ``nn.init`` functions),
and flax's dtypes: ``param_dtype`` stores the parameters, ``dtype`` is the dtype of
the computation (input, weight and bias are cast to it, as ``torch.autocast`` does
for a matmul; ``None``: their promoted dtype, where raw ``nn.Linear`` raises).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_ref.activations import relu

__all__ = ["MLP", "Linear", "SwiGLUFeedForward", "dropout"]


def _check_rate(rate: float, name: str, where: str, *, allow_one: bool) -> float:
    rate = float(rate)
    if not (rate >= 0.0 and (rate <= 1.0 if allow_one else rate < 1.0)):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(
            f"{where}: `{name}` is the dropout probability (not the keep rate) and must lie in "
            f"{interval}, got {rate}."
        )
    return rate


def dropout(
    x: torch.Tensor,
    rate: float,
    *,
    key: torch.Generator | None = None,
    deterministic: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mirrors :func:`jaxreg.nn.dropout`: inverted dropout, ``x * mask / (1 - rate)``.

    Args:
      x: any shape.
      rate: the dropout probability (*not* the keep rate!), in ``[0, 1]``.
      key: an optional ``torch.Generator`` for the mask.
      deterministic: if True, return ``x`` unchanged.
      mask: an injected boolean keep-mask of ``x``'s shape (``True`` = kept), so a
        mask drawn elsewhere (e.g. by JAX) can be replayed; without it the mask
        comes from ``F.dropout`` (or ``key``).
    """
    rate = _check_rate(rate, "rate", "dropout", allow_one=True)
    if deterministic or rate == 0.0:
        return x
    if mask is None and key is None:
        return F.dropout(x, p=rate, training=True)
    if rate == 1.0:
        return torch.zeros_like(x)
    if mask is None:
        mask = torch.empty_like(x).bernoulli_(1.0 - rate, generator=key)
    # The same arithmetic as F.dropout: the mask is scaled, then multiplies x.
    return x * (mask.to(x.dtype) / (1.0 - rate))


class Linear(nn.Linear):
    """Mirrors :class:`jaxreg.nn.Linear`: ``nn.Linear`` with a Xavier-uniform weight and zero bias.

    The weight is ``(out, in)`` (torch), the nnx kernel ``(in, out)``. ``kernel_init``
    and ``bias_init`` are torch's in-place initializers (``nn.init.kaiming_uniform_``
    is :func:`jaxreg.kaiming_uniform`'s twin); ``dtype`` is the computation dtype
    (``None``: the promoted dtype of the input and the parameters), ``param_dtype``
    the storage dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: torch.dtype | None = None,
        param_dtype: torch.dtype | None = None,
        kernel_init: Callable[[torch.Tensor], Any] = nn.init.xavier_uniform_,
        bias_init: Callable[[torch.Tensor], Any] = nn.init.zeros_,
    ) -> None:
        # Set before nn.Linear.__init__, which calls reset_parameters().
        object.__setattr__(self, "kernel_init", kernel_init)
        object.__setattr__(self, "bias_init", bias_init)
        super().__init__(in_features, out_features, bias=use_bias, dtype=param_dtype)
        self.compute_dtype = dtype

    kernel_init: Callable[[torch.Tensor], Any]
    bias_init: Callable[[torch.Tensor], Any]

    def reset_parameters(self) -> None:
        self.kernel_init(self.weight)
        if self.bias is not None:
            self.bias_init(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = [self.weight] + ([] if self.bias is None else [self.bias])
        dtype = self.compute_dtype or functools.reduce(
            torch.promote_types, [t.dtype for t in (x, *params)]
        )
        bias = None if self.bias is None else self.bias.to(dtype)
        return F.linear(x.to(dtype), self.weight.to(dtype), bias)


def _llama_hidden_dim(dim: int, multiple_of: int) -> int:
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class SwiGLUFeedForward(nn.Module):
    """Mirrors :class:`jaxreg.nn.SwiGLUFeedForward`: ``dropout(w2(silu(w1 x) * w3 x))``.

    The LLaMA reference ``FeedForward``, with the hidden size rule applied only
    when ``hidden_dim`` is ``None``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        *,
        multiple_of: int = 256,
        dropout: float = 0.0,
        dtype: torch.dtype | None = None,
        param_dtype: torch.dtype | None = None,
        kernel_init: Callable[[torch.Tensor], Any] = nn.init.xavier_uniform_,
    ) -> None:
        super().__init__()
        if int(multiple_of) < 1:
            raise ValueError(
                f"SwiGLUFeedForward: `multiple_of` must be positive, got {multiple_of}."
            )
        rate = _check_rate(dropout, "dropout", "SwiGLUFeedForward", allow_one=False)
        if hidden_dim is None:
            hidden_dim = _llama_hidden_dim(int(dim), int(multiple_of))
        self.hidden_dim = int(hidden_dim)
        linear: dict[str, Any] = {
            "use_bias": False,
            "dtype": dtype,
            "param_dtype": param_dtype,
            "kernel_init": kernel_init,
        }
        self.w1 = Linear(dim, self.hidden_dim, **linear)
        self.w2 = Linear(self.hidden_dim, dim, **linear)
        self.w3 = Linear(dim, self.hidden_dim, **linear)
        self.dropout = nn.Dropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class MLP(nn.Module):
    """Mirrors :class:`jaxreg.nn.MLP`: ``Linear → activation → dropout`` per hidden layer."""

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: Callable[[torch.Tensor], torch.Tensor] = relu,
        dropout: float = 0.0,
        dtype: torch.dtype | None = None,
        param_dtype: torch.dtype | None = None,
        kernel_init: Callable[[torch.Tensor], Any] = nn.init.xavier_uniform_,
        bias_init: Callable[[torch.Tensor], Any] = nn.init.zeros_,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP: `sizes` needs an input and an output size, got {sizes}.")
        rate = _check_rate(dropout, "dropout", "MLP", allow_one=False)
        self.activation = activation
        self.layers = nn.ModuleList(
            Linear(
                n_in,
                n_out,
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_init=kernel_init,
                bias_init=bias_init,
            )
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = nn.Dropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.dropout(self.activation(layer(x)))
        return last(x)
