"""PyTorch twin of :mod:`jaxreg.nn`: ``Linear``, ``SwiGLUFeedForward``, ``MLP``, ``dropout``.

``torch.nn`` modules with the same constructor arguments and the same parameter
names as the nnx modules (``w1, w2, w3``; ``layers.<i>``), so
:mod:`torch_ref.bridge` copies weights across by name. ``Linear`` is
``nn.Linear`` with jaxreg's initialization (Xavier-uniform weight, zero bias)
instead of torch's default (Kaiming-uniform with ``a=√5``, uniform bias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

    The weight is ``(out, in)`` (torch), the nnx kernel ``(in, out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        param_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=use_bias, dtype=param_dtype)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


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
        param_dtype: torch.dtype | None = None,
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
        self.w1 = Linear(dim, self.hidden_dim, use_bias=False, param_dtype=param_dtype)
        self.w2 = Linear(self.hidden_dim, dim, use_bias=False, param_dtype=param_dtype)
        self.w3 = Linear(dim, self.hidden_dim, use_bias=False, param_dtype=param_dtype)
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
        param_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP: `sizes` needs an input and an output size, got {sizes}.")
        rate = _check_rate(dropout, "dropout", "MLP", allow_one=False)
        self.activation = activation
        self.layers = nn.ModuleList(
            Linear(n_in, n_out, param_dtype=param_dtype)
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = nn.Dropout(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, last = self.layers
        for layer in hidden:
            x = self.dropout(self.activation(layer(x)))
        return last(x)
