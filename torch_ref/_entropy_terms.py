"""The pointwise ``p·log q`` terms of :mod:`torch_ref.information` (private; mirror of
``jaxreg._entropy_terms``), with the ``0·log 0 = 0`` convention in their values *and*
gradients.

Plain autograd of ``p·log q`` gives ``0·(-inf)`` or ``0/0`` (NaN) where ``p = 0``, and
``F.kl_div`` is NaN at ``p = q = 0``. Each term here computes torch's own function where
it is defined and a fallback elsewhere, with the "double where" (:func:`double_where`):
the unused branch sees a safe input, so it cannot leak NaN into the gradient. A NaN input
stays NaN: it takes the computing branch, or the fallback is NaN there too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["double_where", "kl_div_terms", "rel_entr", "safe_xlogy"]


def double_where(
    fn: Callable[..., torch.Tensor],
    ok: torch.Tensor,
    args: Sequence[torch.Tensor],
    fallback: torch.Tensor | float,
) -> torch.Tensor:
    """``fn(*args)`` where ``ok``, else ``fallback`` — with gradient 0 there.

    The unused branch sees the safe input 1 instead of ``args``, so it cannot leak
    ``0 · inf = NaN`` into the gradient (the "double where").
    """
    safe = [torch.where(ok, a, torch.ones_like(a)) for a in args]
    return torch.where(ok, fn(*safe), fallback)


def safe_xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x·log y`` on tensors of one shape and dtype: ``torch.special.xlogy``'s value (held
    constant) where ``y <= 0``, and ``∂x = log y`` also at ``x = 0`` where ``y > 0``."""
    return double_where(
        lambda x, y: x * torch.log(y), y > 0, (x, y), torch.special.xlogy(x, y).detach()
    )


def rel_entr(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``p·log(p/q)`` through ``F.kl_div``, on tensors of one shape and dtype."""
    # Where p = 0 or q = 0 only the cross-entropy term is left: -0 log q = 0 (gradient
    # -log q w.r.t. p, as jaxreg) or -p log 0 = +inf; F.kl_div gives NaN there.
    return double_where(
        lambda p, q: F.kl_div(torch.log(q), p, reduction="none"),
        (p > 0) & (q > 0),
        (p, q),
        -safe_xlogy(p, q),
    )


def kl_div_terms(lq: torch.Tensor, t: torch.Tensor, log_target: bool) -> torch.Tensor:
    """``F.kl_div(lq, t, reduction="none", log_target=log_target)`` with jaxreg's values
    and gradients where torch gives NaN."""
    # Where p = 0 or log q = -inf, F.kl_div gives NaN: there the value is 0 (p = 0; NaN
    # if log q is NaN) or +inf (p > 0 = q), and for a plain target the gradient in p is
    # -log q (the derivative of -p log q), as jaxreg. Guards test `== ` so NaN computes.
    zero = (t == -math.inf) if log_target else (t == 0)
    infinite = (lq == -math.inf) & ((t > -math.inf) if log_target else (t > 0))
    ok = ~(zero | infinite)
    if log_target:
        fallback = torch.zeros_like(t)
    else:
        fallback = -t * torch.where(lq == -math.inf, 0.0, lq)
    fallback = torch.where(infinite, math.inf, fallback + torch.where(torch.isnan(lq), lq, 0.0))
    return double_where(
        lambda lq, t: F.kl_div(lq, t, reduction="none", log_target=log_target),
        ok,
        (lq, t),
        fallback,
    )
