"""Activation functions, from sigmoid to SwiGLU, with torch's derivatives at the kinks.

Values and derivatives equal PyTorch's everywhere, including *at* 0 where the
function has a kink: ``relu'(0) = 0``, ``leaky_relu'(0) = negative_slope``,
``prelu'(0) = weight`` and ``elu'(0) = alpha`` (torch takes the left branch at 0;
``jax.nn.leaky_relu`` takes the right one, so it is not used here).

The gated units split one axis in two halves ``a, b`` (first, second):
``glu = a · sigmoid(b)`` (torch's ``F.glu``) and ``swiglu = silu(a) · b`` (the
LLaMA feed-forward gate, with the two projections stacked on one axis).

References:
  Dauphin et al., *Language Modeling with Gated Convolutional Networks*, 2017 (GLU).
  Ramachandran et al., *Searching for Activation Functions*, 2017 (Swish).
  Shazeer, *GLU Variants Improve Transformer*, 2020 (SwiGLU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxreg import _numerics

__all__ = [
    "elu",
    "glu",
    "leaky_relu",
    "prelu",
    "relu",
    "sigmoid",
    "silu",
    "swiglu",
    "swish",
    "tanh",
]


def _scalar_like(value: ArrayLike, x: jax.Array, name: str, fn: str) -> jax.Array:
    """A scalar hyperparameter cast to ``x``'s dtype (explicit, so strict promotion holds)."""
    arr = jnp.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{fn}: `{name}` must be a scalar, got shape {arr.shape}.")
    return arr.astype(x.dtype)


def _halves(x: ArrayLike, axis: int, fn: str) -> tuple[jax.Array, jax.Array]:
    """The first and second halves of ``x`` along ``axis``; the size must be even."""
    x = _numerics.as_float_array(x, "x")
    if x.ndim == 0:
        raise ValueError(f"{fn}: `x` must have at least one axis, got a scalar.")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{fn}: `axis={axis}` is out of range for `x` of shape {x.shape}.")
    size = x.shape[axis]
    if size % 2:
        raise ValueError(
            f"{fn}: `x` must have an even size along `axis={axis}` to split it in two halves, "
            f"got shape {x.shape}; pad or project `x` to an even size first."
        )
    a, b = jnp.split(x, 2, axis=axis)
    return a, b


@_numerics.compiled()
def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid.

    .. math::
      \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)(1 - \sigma(x))

    Args:
      x: floating array of any shape.

    Returns:
      ``sigma(x)``, same shape and dtype as ``x``.

    Example:
      >>> print(jnp.round(sigmoid(jnp.array([-1.0, 0.0, 1.0])), 4))
      [0.2689 0.5    0.7311]
    """
    return jax.nn.sigmoid(_numerics.as_float_array(x, "x"))


@_numerics.compiled()
def tanh(x: ArrayLike) -> jax.Array:
    r"""Hyperbolic tangent.

    .. math::
      \tanh(x) = \frac{e^x - e^{-x}}{e^x + e^{-x}} = 2\sigma(2x) - 1,
      \qquad \tanh'(x) = 1 - \tanh^2(x)

    Args:
      x: floating array of any shape.

    Returns:
      ``tanh(x)``, same shape and dtype as ``x``.

    Example:
      >>> print(jnp.round(tanh(jnp.array([-1.0, 0.0, 1.0])), 4))
      [-0.7616  0.      0.7616]
    """
    return jnp.tanh(_numerics.as_float_array(x, "x"))


@_numerics.compiled()
def relu(x: ArrayLike) -> jax.Array:
    r"""Rectified linear unit, with derivative 0 at 0 (torch).

    .. math::
      \mathrm{relu}(x) = \max(x, 0), \qquad \mathrm{relu}'(x) = [x > 0]

    Args:
      x: floating array of any shape.

    Returns:
      ``max(x, 0)``, same shape and dtype as ``x``.

    Example:
      >>> print(relu(jnp.array([-2.0, 0.0, 3.0])))
      [0. 0. 3.]
      >>> print(jax.grad(relu)(0.0))
      0.0
    """
    # jax.nn.relu carries a custom JVP whose derivative at 0 is 0, as torch's.
    return jax.nn.relu(_numerics.as_float_array(x, "x"))


@_numerics.compiled()
def leaky_relu(x: ArrayLike, negative_slope: ArrayLike = 0.01) -> jax.Array:
    r"""Leaky ReLU, with derivative ``negative_slope`` at 0 (torch).

    .. math::
      \mathrm{leaky\_relu}(x) = \begin{cases} x & x > 0 \\ \alpha x & x \le 0 \end{cases}

    ``jax.nn.leaky_relu`` takes the branch ``x >= 0`` and so has derivative 1 at
    0; torch's is :math:`\alpha`. This one follows torch.

    Args:
      x: floating array of any shape.
      negative_slope: the scalar slope :math:`\alpha` for ``x <= 0``.

    Returns:
      Same shape and dtype as ``x``.

    Example:
      >>> print(leaky_relu(jnp.array([-2.0, 0.0, 3.0]), 0.1))
      [-0.2  0.   3. ]
      >>> print(jnp.round(jax.grad(leaky_relu)(0.0), 4))
      0.01
    """
    x = _numerics.as_float_array(x, "x")
    slope = _scalar_like(negative_slope, x, "negative_slope", "leaky_relu")
    # `x > 0` (not `>=`) puts the kink's derivative on the slope's side, like torch.
    return jnp.where(x > 0, x, slope * x)


@_numerics.compiled("axis")
def prelu(x: ArrayLike, weight: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Parametric ReLU: a leaky ReLU with a learned slope per channel (along ``axis``).

    .. math::
      \mathrm{prelu}(x)_{\dots c \dots} = \begin{cases} x_{\dots c \dots} & x_{\dots c \dots} > 0 \\
        w_c\, x_{\dots c \dots} & x_{\dots c \dots} \le 0 \end{cases}

    The derivative at 0 is the slope ``w_c`` (torch). The channels are on the last
    axis by default, like every class/feature axis in jaxreg; torch's ``F.prelu``
    puts them on dim 1, so ported code calls ``prelu(x, weight, axis=1)`` (for an
    input of one or no dimension torch has one channel: ``weight`` is then a single
    slope, whatever ``axis``).

    Args:
      x: floating array ``[..., C, ...]`` with the channels on ``axis``.
      weight: the slope, a scalar, shape ``[1]`` or ``[C]``.
      axis: the channel axis of ``x`` (``1`` for torch's layout).

    Returns:
      Same shape and dtype as ``x``.

    Raises:
      ValueError: if ``weight`` is neither a scalar nor of size 1 or ``C``, or ``axis``
        is out of range.

    Example:
      >>> x = jnp.array([[-1.0, -1.0], [2.0, 0.0]])
      >>> print(prelu(x, jnp.array([0.25, 0.5])))
      [[-0.25 -0.5 ]
       [ 2.    0.  ]]
      >>> print(prelu(x, jnp.array([0.25, 0.5]), axis=0))  # channels on the rows
      [[-0.25 -0.25]
       [ 2.    0.  ]]
    """
    x = _numerics.as_float_array(x, "x")
    w = _numerics.as_float_array(weight, "weight")
    if w.ndim <= 1 and w.size == 1:
        w = w.reshape(())  # a single slope: a scalar, no channel axis needed
    else:
        channel_axis = _numerics.normalize_axis(axis, x.ndim) if x.ndim else -1
        channels = x.shape[channel_axis] if x.ndim else 1
        if w.ndim > 1 or w.size != channels:
            where = f"axis {axis} of `x` (shape {x.shape})" if x.ndim else "a scalar `x`"
            raise ValueError(
                f"prelu: `weight` must be a scalar or have shape (1,) or ({channels},) to "
                f"match {where}, got shape {w.shape}; torch's channels are on dim 1: pass "
                f"`axis=1`."
            )
        # per-channel slopes, laid along `axis` and broadcast over the other axes
        shape = [1] * x.ndim
        shape[channel_axis] = w.size
        w = w.reshape(shape)
    w = jnp.broadcast_to(w.astype(x.dtype), x.shape)
    return jnp.where(x > 0, x, w * x)


@_numerics.compiled()
def elu(x: ArrayLike, alpha: ArrayLike = 1.0) -> jax.Array:
    r"""Exponential linear unit, with derivative ``alpha`` at 0 (torch).

    .. math::
      \mathrm{elu}(x) = \begin{cases} x & x > 0 \\ \alpha (e^x - 1) & x \le 0 \end{cases},
      \qquad \mathrm{elu}'(x) = \begin{cases} 1 & x > 0 \\ \alpha e^x & x \le 0 \end{cases}

    The derivative is :math:`\alpha e^x` evaluated directly (a custom JVP): autodiff
    of ``expm1`` would form ``expm1(x) + 1``, which loses all relative precision
    for very negative ``x``. torch's backward also uses ``exp``.

    Args:
      x: floating array of any shape.
      alpha: the scalar :math:`\alpha`, the value approached as ``x -> -inf``.

    Returns:
      Same shape and dtype as ``x``.

    Example:
      >>> print(jnp.round(elu(jnp.array([-1.0, 0.0, 2.0])), 4))
      [-0.6321  0.      2.    ]
      >>> print(jax.grad(elu)(-30.0) == jnp.exp(-30.0))
      True
    """
    x = _numerics.as_float_array(x, "x")
    return _elu(x, _scalar_like(alpha, x, "alpha", "elu"))


@jax.custom_jvp
def _elu(x: jax.Array, alpha: jax.Array) -> jax.Array:
    # expm1 only sees min(x, 0): no overflow in the unused branch.
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


@_elu.defjvp
def _elu_jvp(primals, tangents):
    x, alpha = primals
    dx, dalpha = tangents
    negative = jnp.minimum(x, 0)
    # `x > 0` puts the kink at 0 on the exponential side: elu'(0) = alpha, like torch.
    dy_dx = jnp.where(x > 0, 1, alpha * jnp.exp(negative))
    dy_dalpha = jnp.where(x > 0, 0, jnp.expm1(negative))
    return _elu(x, alpha), dy_dx * dx + dy_dalpha * dalpha


@_numerics.compiled("axis")
def glu(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Gated linear unit: the first half gated by the sigmoid of the second (torch).

    .. math::
      \mathrm{glu}(x) = a \odot \sigma(b), \qquad x = [a, b] \text{ along } \texttt{axis}

    Args:
      x: floating array with an even size ``2H`` along ``axis``.
      axis: the axis to split.

    Returns:
      The shape of ``x`` with ``H`` along ``axis``; dtype of ``x``.

    Raises:
      ValueError: if the size along ``axis`` is odd.

    Example:
      >>> print(jnp.round(glu(jnp.array([1.0, 2.0, 0.0, 100.0])), 4))
      [0.5 2. ]
    """
    a, b = _halves(x, axis, "glu")
    return a * jax.nn.sigmoid(b)


@_numerics.compiled()
def swish(x: ArrayLike, beta: ArrayLike = 1.0) -> jax.Array:
    r"""Swish with a slope parameter; ``beta = 1`` is :func:`silu`.

    .. math::
      \mathrm{swish}_\beta(x) = x\, \sigma(\beta x)

    Args:
      x: floating array of any shape.
      beta: the scalar :math:`\beta` (``beta -> inf`` approaches relu, ``beta = 0``
        gives ``x / 2``).

    Returns:
      Same shape and dtype as ``x``.

    Example:
      >>> print(jnp.round(swish(jnp.array([-1.0, 0.0, 1.0]), 2.0), 4))
      [-0.1192  0.      0.8808]
    """
    x = _numerics.as_float_array(x, "x")
    return x * jax.nn.sigmoid(_scalar_like(beta, x, "beta", "swish") * x)


@_numerics.compiled()
def silu(x: ArrayLike) -> jax.Array:
    r"""Sigmoid linear unit (swish with ``beta = 1``), torch's ``F.silu``.

    .. math::
      \mathrm{silu}(x) = x\, \sigma(x), \qquad \mathrm{silu}'(x) = \sigma(x)(1 + x(1 - \sigma(x)))

    Args:
      x: floating array of any shape.

    Returns:
      Same shape and dtype as ``x``.

    Example:
      >>> print(jnp.round(silu(jnp.array([-1.0, 0.0, 1.0])), 4))
      [-0.2689  0.      0.7311]
    """
    return jax.nn.silu(_numerics.as_float_array(x, "x"))


@_numerics.compiled("axis")
def swiglu(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""SwiGLU: silu of the first half times the second half (LLaMA's gate).

    .. math::
      \mathrm{swiglu}(x) = \mathrm{silu}(a) \odot b, \qquad x = [a, b] \text{ along } \texttt{axis}

    With ``x = concat([x W_1, x W_3])`` this is the inner product of the LLaMA
    feed-forward, ``silu(x W_1) * (x W_3)``.

    Args:
      x: floating array with an even size ``2H`` along ``axis``.
      axis: the axis to split.

    Returns:
      The shape of ``x`` with ``H`` along ``axis``; dtype of ``x``.

    Raises:
      ValueError: if the size along ``axis`` is odd.

    Example:
      >>> print(jnp.round(swiglu(jnp.array([1.0, 0.0, 2.0, 5.0])), 4))
      [1.4621 0.    ]
    """
    a, b = _halves(x, axis, "swiglu")
    return jax.nn.silu(a) * b
