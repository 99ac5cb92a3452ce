"""flax.nnx layers: a Xavier-initialized ``Linear``, LLaMA's SwiGLU feed-forward, an MLP, dropout.

Kernels are stored ``(in, out)`` (flax's layout; torch stores ``(out, in)``,
``torch_ref.bridge`` transposes when copying). The modules follow flax's dtype
conventions (``flax.nnx.Linear``): ``param_dtype`` is the storage dtype of the
parameters, ``dtype`` the dtype of the computation, and the input and the
parameters are promoted to it with ``flax.nnx.nn.dtypes.promote_dtype``
(``dtype=None``: the promoted dtype of the input and the parameters). So
``dtype=jnp.bfloat16`` with the default float32 ``param_dtype`` is the usual
mixed-precision set-up: float32 master weights (and gradients), bf16 matmuls.
The kernel initializer is selectable (``kernel_init``: Xavier-uniform by default,
:func:`jaxreg.kaiming_uniform` or any ``init(key, shape, dtype)``). Parameter names
follow the torch modules they mirror (``w1``, ``w2``, ``w3`` of the LLaMA
feed-forward, ``layers.<i>`` of the MLP), so weights copy across by name.

Dropout is inverted: kept entries are scaled by ``1 / (1 - rate)`` during
training, so evaluation is the identity. The modules use ``nnx.Dropout``
(switch it off with ``model.eval()`` or ``nnx.view(model, deterministic=True)``),
which draws the same mask as the functional :func:`dropout` for the same key.

References:
  Touvron et al., *LLaMA: Open and Efficient Foundation Language Models*, 2023.
  Srivastava et al., *Dropout: A Simple Way to Prevent Neural Networks from
  Overfitting*, JMLR 2014.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype
from jax import lax
from jax.typing import ArrayLike, DTypeLike

from jaxreg import _numerics
from jaxreg.activations import relu, silu
from jaxreg.init import Initializer, xavier_uniform

__all__ = ["MLP", "Linear", "SwiGLUFeedForward", "dropout"]


def _check_rate(rate: float, name: str, where: str, *, allow_one: bool) -> float:
    """``rate`` as a float in ``[0, 1)`` (or ``[0, 1]``), else a ``ValueError`` naming it."""
    rate = float(rate)
    upper_ok = rate <= 1.0 if allow_one else rate < 1.0
    if not (rate >= 0.0 and upper_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(
            f"{where}: `{name}` is the dropout probability (not the keep rate) and must lie in "
            f"{interval}, got {rate}."
        )
    return rate


def dropout(
    x: ArrayLike, rate: float, *, key: jax.Array | None = None, deterministic: bool = False
) -> jax.Array:
    r"""Inverted dropout: zero each entry with probability ``rate``, scale the rest up.

    .. math::
      y_i = \frac{m_i\, x_i}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p)

    so :math:`\mathbb{E}[y] = x`. The mask for a given ``key`` is the one
    ``nnx.Dropout(rate)(x, rngs=key)`` draws. ``rate = 1`` returns zeros (and zero
    gradients), like torch's ``F.dropout``.

    Args:
      x: floating array of any shape.
      rate: the dropout probability (*not* the keep rate!), in ``[0, 1]``; a number or
        a (traced) scalar array, checked when concrete.
      key: a ``jax.random`` key; required unless ``deterministic`` or ``rate`` is a
        concrete 0.
      deterministic: if True, return ``x`` unchanged (evaluation).

    Returns:
      Same shape and dtype as ``x``.

    Raises:
      ValueError: if ``rate`` is outside ``[0, 1]`` or ``key`` is missing.

    Example:
      >>> y = dropout(jnp.ones(8), 0.5, key=jax.random.key(0))
      >>> print(sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0]))
      True
      >>> print(dropout(jnp.ones(3), 0.5, deterministic=True))
      [1. 1. 1.]
    """
    x = _numerics.as_float_array(x, "x")
    if deterministic:
        return x
    if _numerics.is_concrete(rate):
        rate = _check_rate(rate, "rate", "dropout", allow_one=True)
        if rate == 0.0:
            return x  # what the formula below gives, without a key
        if rate == 1.0:
            return jnp.zeros_like(x)  # no division by zero, zero gradient
    if key is None:
        raise ValueError(
            "dropout: `key` is required when `deterministic=False` and `rate > 0` (or "
            "traced); pass `key=jax.random.key(...)`, or `deterministic=True` for evaluation."
        )
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, p=keep, shape=x.shape)
    # A traced rate of 1 keeps nothing: divide by 1 there (the double where), so the
    # unused branch cannot give a NaN gradient.
    keep_safe = keep if isinstance(keep, float) else jnp.where(keep == 0, 1.0, keep)
    return lax.select(mask, x / keep_safe, jnp.zeros_like(x))


#: The default kernel initializer: Xavier (Glorot) uniform on the ``(in, out)`` kernel.
default_kernel_init: Initializer = xavier_uniform()
#: The default bias initializer: zeros (torch's ``nn.Linear`` draws a uniform bias).
default_bias_init: Initializer = jax.nn.initializers.zeros


class Linear(nnx.Module):
    r"""Affine layer ``y = x W + b`` with a Xavier-uniform kernel ``(in, out)`` and zero bias.

    .. math::
      y = x W + b, \qquad W \sim U\!\left(-\sqrt{\tfrac{6}{n_{in} + n_{out}}},
      \sqrt{\tfrac{6}{n_{in} + n_{out}}}\right)

    Unlike torch's ``nn.Linear`` (Kaiming-uniform with ``a=√5``, uniform bias),
    the default is Glorot's initialization; ``torch_ref.nn.Linear`` does the same.
    ``kernel_init=jaxreg.kaiming_uniform()`` gives He's (torch's ``kaiming_uniform_``
    defaults, variance ``2 / in_features``).

    dtypes as in ``flax.nnx.Linear``: the parameters are stored in ``param_dtype``;
    the input, kernel and bias are cast to ``dtype`` for the computation (and the
    result is in ``dtype``). With ``dtype=None`` they are promoted to their common
    dtype (``jnp.result_type``: a bf16 input and float32 parameters compute in
    float32); under ``jax_numpy_dtype_promotion="strict"`` such a mix has no implicit
    promotion and raises a ``TypeError`` that names ``dtype=``.

    Args:
      in_features: size of the last axis of the input.
      out_features: size of the last axis of the output.
      use_bias: whether to add a bias (``bias`` parameter, shape ``(out,)``).
      dtype: the dtype of the computation (default: inferred from the input and the
        parameters, as flax does).
      param_dtype: the dtype the parameters are initialized and stored in.
      kernel_init: ``init(key, (in, out), dtype)`` for the kernel (default Xavier uniform).
      bias_init: ``init(key, (out,), dtype)`` for the bias (default zeros).
      rngs: ``nnx.Rngs`` with a ``params`` stream (or a default one).

    Example:
      >>> from flax import nnx
      >>> layer = Linear(6, 16, rngs=nnx.Rngs(0))
      >>> print(layer.kernel.shape, layer(jnp.ones((4, 6), jnp.float32)).shape)
      (6, 16) (4, 16)
      >>> mixed = Linear(6, 16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))  # float32 weights
      >>> print(mixed.kernel.dtype, mixed(jnp.ones((4, 6), jnp.bfloat16)).dtype)
      float32 bfloat16
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        rngs: nnx.Rngs,
    ) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.dtype = dtype
        self.param_dtype = param_dtype
        key = rngs.params()
        shape = (self.in_features, self.out_features)
        self.kernel = nnx.Param(kernel_init(key, shape, param_dtype))
        # The bias draws from a key derived from the kernel's, so adding or removing a
        # bias never shifts the random stream of the layers built after this one.
        self.bias = (
            nnx.Param(bias_init(jax.random.fold_in(key, 1), (self.out_features,), param_dtype))
            if use_bias
            else None
        )

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the layer to ``x`` ``[..., in_features]``; returns ``[..., out_features]``."""
        x = _numerics.as_float_array(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: `x` must have last axis {self.in_features} (in_features), got shape "
                f"{x.shape}; for a single example pass shape ({self.in_features},)."
            )
        kernel = self.kernel[...]
        bias = self.bias[...] if self.bias is not None else None
        try:
            x, kernel, bias = promote_dtype((x, kernel, bias), dtype=self.dtype)
        except jax.dtypes.TypePromotionError:  # only under strict promotion, dtype=None
            raise TypeError(
                f"Linear: `x` has dtype {x.dtype} but the parameters are {kernel.dtype}, and "
                f"strict dtype promotion has no common dtype for them; pass the computation "
                f"dtype explicitly, e.g. `Linear(..., dtype=jnp.{x.dtype})` (mixed precision: "
                f"{kernel.dtype} weights, {x.dtype} matmuls), or cast `x.astype({kernel.dtype})`."
            ) from None
        y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        if bias is not None:
            y = y + jnp.broadcast_to(bias, y.shape)
        return y


def _llama_hidden_dim(dim: int, multiple_of: int) -> int:
    """LLaMA's rule: two thirds of ``4·dim``, rounded up to a multiple of ``multiple_of``."""
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class SwiGLUFeedForward(nnx.Module):
    r"""LLaMA's feed-forward block: ``w2(silu(w1 x) * w3 x)``, no biases, then dropout.

    .. math::
      \mathrm{FFN}(x) = \mathrm{dropout}\big((\mathrm{silu}(x W_1) \odot x W_3)\, W_2\big)

    With ``hidden_dim=None`` the hidden size is LLaMA's ``int(2·4·dim/3)`` rounded
    up to a multiple of ``multiple_of``, so the parameter count matches a
    ``4·dim`` ReLU block: ``dim=4096, multiple_of=256`` gives 11008 (LLaMA-7B).

    Args:
      dim: model width (input and output size).
      hidden_dim: hidden size; ``None`` applies LLaMA's rule. A given value is used as is.
      multiple_of: rounding of the LLaMA rule (positive).
      dropout: the dropout probability (*not* the keep rate!) after ``w2``, in ``[0, 1)``.
      dtype: the dtype of the computation (see :class:`Linear`; ``None``: inferred).
      param_dtype: the dtype the parameters are stored in.
      kernel_init: the initializer of the three kernels (default Xavier uniform).
      rngs: ``nnx.Rngs`` (``params`` stream; ``dropout`` stream when ``dropout > 0``).

    Attributes:
      w1: ``Linear(dim, hidden_dim, use_bias=False)``, the gate.
      w3: ``Linear(dim, hidden_dim, use_bias=False)``, the value.
      w2: ``Linear(hidden_dim, dim, use_bias=False)``, the output projection.
      hidden_dim: the hidden size used.

    Example:
      >>> from flax import nnx
      >>> # LLaMA-7B's sizes, traced without allocating the 3 x 45M parameters
      >>> ff = nnx.eval_shape(lambda: SwiGLUFeedForward(4096, multiple_of=256, rngs=nnx.Rngs(0)))
      >>> print(ff.hidden_dim, ff.w1.kernel.shape, ff.w2.kernel.shape)
      11008 (4096, 11008) (11008, 4096)
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        *,
        multiple_of: int = 256,
        dropout: float = 0.0,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        rngs: nnx.Rngs,
    ) -> None:
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
            "rngs": rngs,
        }
        self.w1 = Linear(dim, self.hidden_dim, **linear)
        self.w2 = Linear(self.hidden_dim, dim, **linear)
        self.w3 = Linear(dim, self.hidden_dim, **linear)
        self.dropout = nnx.Dropout(rate, rngs=rngs)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the block to ``x`` of shape ``[..., dim]``; returns ``[..., dim]``."""
        return self.dropout(self.w2(silu(self.w1(x)) * self.w3(x)))


class MLP(nnx.Module):
    r"""Multi-layer perceptron: ``Linear → activation → dropout`` per hidden layer, then ``Linear``.

    .. math::
      h_0 = x, \quad h_{l} = \mathrm{dropout}(\phi(h_{l-1} W_l + b_l)), \quad
      y = h_{L-1} W_L + b_L

    Args:
      sizes: layer widths ``[in, hidden..., out]`` (at least two).
      activation: elementwise nonlinearity :math:`\phi` (default :func:`jaxreg.relu`).
      dropout: the dropout probability (*not* the keep rate!) after each hidden
        activation, in ``[0, 1)``.
      dtype: the dtype of the computation (see :class:`Linear`; ``None``: inferred).
      param_dtype: the dtype the parameters are stored in.
      kernel_init: the initializer of every kernel (default Xavier uniform).
      bias_init: the initializer of every bias (default zeros).
      rngs: ``nnx.Rngs`` (``params`` stream; ``dropout`` stream when ``dropout > 0``).

    Attributes:
      layers: ``nnx.List`` of :class:`Linear`, parameters ``layers.<i>.kernel`` / ``.bias``.

    Example:
      >>> from flax import nnx
      >>> mlp = MLP([6, 16, 16, 6], dropout=0.5, rngs=nnx.Rngs(0))
      >>> mlp.eval()  # dropout off
      >>> print(mlp(jnp.ones((2, 6), jnp.float32)).shape)
      (2, 6)
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: Callable[[jax.Array], jax.Array] = relu,
        dropout: float = 0.0,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        rngs: nnx.Rngs,
    ) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP: `sizes` needs an input and an output size, got {sizes}.")
        rate = _check_rate(dropout, "dropout", "MLP", allow_one=False)
        self.activation = activation
        self.layers = nnx.List(
            [
                Linear(
                    n_in,
                    n_out,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    kernel_init=kernel_init,
                    bias_init=bias_init,
                    rngs=rngs,
                )
                for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.dropout = nnx.Dropout(rate, rngs=rngs)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """Applies the network to ``x`` ``[..., sizes[0]]``; returns ``[..., sizes[-1]]``."""
        *hidden, last = self.layers
        for layer in hidden:
            x = self.dropout(self.activation(layer(x)))
        return last(x)
