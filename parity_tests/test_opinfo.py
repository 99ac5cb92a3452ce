"""Conformance to PyTorch's own sample inputs: every OpInfo sample of the torch operators
that jaxreg mirrors, run through jaxreg, values and gradients compared with torch's.

PyTorch ships, for each operator, a generator of sample inputs (the OpInfo database,
``torch.testing._internal.common_methods_invocations.op_db``; importing it needs the
``expecttest`` package). For every operator in :data:`OPS` (those the issue names, with
every OpInfo variant, plus ``masked.norm`` for ``vector_norm``'s ``where=``), every
sample of its ``reference_inputs`` (the ``sample_inputs`` plus, where torch has them,
the extra reference inputs: large tensors, extremal values, broadcasting, scalars) is

* *mapped* to the jaxreg call with torch's meaning (``dim`` -> ``axis``, torch's class
  dim 1 -> ``axis=1``, ``linear_weight (V, D)`` -> ``weight (D, V)``, ...), run in
  float64 and float32 on the CPU, and compared with torch: values, and the gradients
  with respect to every floating tensor torch differentiates (the same random
  cotangent on both sides, zero where torch's value is not finite), norm-wise
  ``max|jax - torch| <= tol·max(1, max|torch|)`` with ``tol`` 1e-10 (float64) and 1e-4
  (float32), non-finite entries at the same places; or
* *unsupported*: the sample uses something jaxreg deliberately lacks, and the adapter
  says which rule of :data:`UNSUPPORTED` (op, what the samples have, why); or
* *a documented convention*: the entries where jaxreg's documented convention differs
  from torch's (:data:`CONVENTIONS`: op, where, what each side gives) are checked
  against jaxreg's convention instead of torch's value.

The tables are exhaustive both ways: a sample that is neither mapped nor covered by a
rule fails, an error that no rule explains fails, a difference that no convention
explains fails, and a rule or convention that no sample uses fails (so the tables
stay true). Each operator's mapped samples are compiled as one program per dtype
(the module takes about two minutes on two CPU cores: marked slow).
``python -m parity_tests.test_opinfo [op ...]`` prints the results per op, and
``python -m parity_tests.test_opinfo --unsupported`` the table of every unsupported
sample as ``| op | sample | reason |``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree

import jaxreg
from jaxreg import information
from parity_tests.harness import parity_settings

pytestmark = pytest.mark.slow

#: Norm-wise tolerance per dtype (the issue's acceptance: 1e-10 float64, 1e-4 float32).
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
DTYPES = ("float64", "float32")


class Unsupported(Exception):  # noqa: N818 (a verdict, not an error)
    """Raised by an adapter: the sample uses what rule ``rule`` of :data:`UNSUPPORTED` says."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@dataclasses.dataclass(frozen=True)
class Sample:
    """A sample's ``(input, args, kwargs)``, with NumPy arrays (when planning) or JAX
    arrays (when running) in place of torch tensors."""

    input: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        """torch's argument ``name``, given positionally at ``index`` (after the input)
        or by keyword."""
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)


Adapter = Callable[[Sample], Callable[[Sample], Any]]


# --- small helpers of the adapters -----------------------------------------------------


def _ndim(x: Any) -> int:
    return np.ndim(x)


def _jax_dtype(dtype: torch.dtype | None) -> Any:
    return None if dtype is None else jnp.dtype(str(dtype).removeprefix("torch."))


def _axis(dim: Any) -> Any:
    """torch's ``dim`` as jaxreg's ``axis``: a tuple for a list, ``None`` for ``()``
    (torch reduces every dimension for an empty ``dim``)."""
    if isinstance(dim, (list, tuple)):
        return tuple(dim) if len(dim) else None
    return dim


def _no_scalar_with_dim(s: Sample, dim: Any) -> None:
    """A 0-d input with an explicit ``dim`` (0 or -1): torch treats a scalar as a
    one-element vector; jaxreg's axis must exist."""
    if _ndim(s.input) == 0 and dim is not None and _axis(dim) is not None:
        raise Unsupported("0-d input with dim")


def _class_axis(x: Any) -> int:
    """torch's class dim: 1 for a batch ``(N, C, ...)``, 0 for an unbatched ``(C,)``."""
    return 1 if _ndim(x) >= 2 else 0


# --- adapters: torch's call -> jaxreg's call (kwargs mapped, or Unsupported) ------------


def _softmax(fn: Callable[..., Any]) -> Adapter:
    def adapt(s: Sample):
        dim = s.arg(0, "dim")
        _no_scalar_with_dim(s, dim)
        dtype = _jax_dtype(s.arg(1, "dtype"))
        return lambda j: fn(j.input, axis=dim, dtype=dtype)

    return adapt


def _logsumexp(s: Sample):
    dim, keepdim = s.arg(0, "dim"), s.arg(1, "keepdim", False)
    _no_scalar_with_dim(s, dim)
    return lambda j: jaxreg.logsumexp(j.input, axis=_axis(dim), keepdims=keepdim)


def _cross_entropy(s: Sample):
    target = s.args[0]
    axis = _class_axis(s.input)
    kwargs = {
        "reduction": s.kwargs.get("reduction", "mean"),
        "ignore_index": s.kwargs.get("ignore_index", -100),
        "label_smoothing": s.kwargs.get("label_smoothing", 0.0),
    }
    if np.issubdtype(np.asarray(target).dtype, np.floating) and kwargs["ignore_index"] != -100:
        raise Unsupported("probability targets with ignore_index")
    return lambda j: jaxreg.softmax_cross_entropy(
        j.input, j.args[0], axis=axis, weight=j.kwargs.get("weight"), **kwargs
    )


def _nll_loss(s: Sample):
    axis = _class_axis(s.input)
    reduction = s.kwargs.get("reduction", "mean")
    ignore_index = s.kwargs.get("ignore_index", -100)
    return lambda j: jaxreg.nll_loss(
        j.input,
        j.args[0],
        axis=axis,
        weight=j.kwargs.get("weight"),
        ignore_index=ignore_index,
        reduction=reduction,
    )


def _kl_div(s: Sample):
    reduction = s.kwargs.get("reduction", "mean")
    log_target = s.kwargs.get("log_target", False)
    return lambda j: information.kl_div(
        j.input, j.args[0], reduction=reduction, log_target=log_target
    )


def _bce_with_logits(s: Sample):
    reduction = s.kwargs.get("reduction", "mean")
    shape = np.shape(s.input)

    def run(j: Sample):
        # torch broadcasts `weight` and `pos_weight` against the input; jaxreg takes them
        # broadcastable too, spelled out here as torch's implicit broadcast.
        weight = j.kwargs.get("weight")
        return jaxreg.binary_cross_entropy_with_logits(
            j.input,
            j.args[0],
            weight=None if weight is None else jnp.broadcast_to(weight, shape),
            pos_weight=j.kwargs.get("pos_weight"),
            reduction=reduction,
        )

    return run


def _mse_loss(s: Sample):
    reduction = s.arg(1, "reduction", "mean")
    return lambda j: jaxreg.mse_loss(j.input, j.args[0], reduction=reduction)


def _elementwise(fn: Callable[[jax.Array], jax.Array]) -> Adapter:
    def adapt(s: Sample):
        if s.args or s.kwargs:
            raise Unsupported("arguments")
        return lambda j: fn(j.input)

    return adapt


def _leaky_relu(s: Sample):
    slope = s.arg(0, "negative_slope", 0.01)
    return lambda j: jaxreg.leaky_relu(j.input, slope)


def _elu(s: Sample):
    alpha = s.arg(0, "alpha", 1.0)
    return lambda j: jaxreg.elu(j.input, alpha)


def _prelu(s: Sample):
    # torch's channels are on dim 1 (one channel for an input of fewer dimensions).
    axis = 1 if _ndim(s.input) >= 2 else -1
    return lambda j: jaxreg.prelu(j.input, j.arg(0, "weight"), axis=axis)


def _glu(s: Sample):
    dim = s.arg(0, "dim", -1)
    return lambda j: jaxreg.glu(j.input, axis=dim)


def _vector_norm(s: Sample):
    ord_, dim = s.arg(0, "ord", 2), s.arg(1, "dim")
    keepdim = s.arg(2, "keepdim", False)
    _no_scalar_with_dim(s, dim)
    return lambda j: jaxreg.vector_norm(j.input, ord_, axis=_axis(dim), keepdims=keepdim)


def _masked_norm(s: Sample):
    """``torch.masked.norm(x, ord, dim, keepdim, mask=...)``: ``vector_norm``'s ``where``."""
    ord_, dim = s.arg(0, "ord"), s.arg(1, "dim")
    keepdim = s.arg(2, "keepdim", False)
    _no_scalar_with_dim(s, dim)
    return lambda j: jaxreg.vector_norm(
        j.input, ord_, axis=_axis(dim), keepdims=keepdim, where=j.kwargs.get("mask")
    )


def _matrix_norm(s: Sample):
    ord_, dim = s.arg(0, "ord", "fro"), s.arg(1, "dim", (-2, -1))
    keepdim = s.arg(2, "keepdim", False)
    return lambda j: jaxreg.matrix_norm(j.input, ord_, axis=tuple(dim), keepdims=keepdim)


def _linalg_norm(s: Sample):
    """``torch.linalg.norm``: a vector norm for one ``dim`` (or a 1-D input without
    ``dim``), a matrix norm for two (or a 2-D input without ``dim`` but with ``ord``)."""
    ord_, dim = s.arg(0, "ord"), s.arg(1, "dim")
    keepdim = s.arg(2, "keepdim", False)
    if isinstance(dim, int):
        dim = (dim,)
    if dim is None and ord_ is None:
        return lambda j: jaxreg.vector_norm(j.input, 2, axis=None, keepdims=keepdim)
    if dim is None:
        dim = tuple(range(_ndim(s.input)))
    if len(dim) == 1:
        p = 2 if ord_ is None else ord_
        return lambda j: jaxreg.vector_norm(j.input, p, axis=tuple(dim), keepdims=keepdim)
    p = "fro" if ord_ is None else ord_
    return lambda j: jaxreg.matrix_norm(j.input, p, axis=tuple(dim), keepdims=keepdim)


def _xlogy(s: Sample):
    return lambda j: information.xlogy(j.input, j.args[0])


def _entr(s: Sample):
    # torch.special.entr(x) = -x log x elementwise: jaxreg's entropy over a length-1 axis.
    return lambda j: jaxreg.entropy(jnp.asarray(j.input)[..., None])


@functools.cache
def fused_features() -> frozenset[str]:
    """What ``jaxreg.fused_linear_cross_entropy`` supports of torch's options that land in
    separate changes (issue 13, Parts A and B): ``"class weights"`` once its keyword
    ``weight`` is torch's class weight (the projection then being ``linear_weight``), and
    ``"probability targets"`` once it accepts floating labels ``[N, V]``."""
    features = set()
    params = inspect.signature(jaxreg.fused_linear_cross_entropy).parameters
    if "linear_weight" in params and "weight" in params:
        features.add("class weights")
    try:
        jax.eval_shape(
            lambda: jaxreg.fused_linear_cross_entropy(
                jnp.zeros((2, 3)), jnp.zeros((3, 4)), jnp.full((2, 4), 0.25)
            )
        )
        features.add("probability targets")
    except (TypeError, ValueError):
        pass
    return frozenset(features)


def _linear_cross_entropy(s: Sample):
    weight, target = s.args
    if np.ndim(weight) != 2:
        raise Unsupported("K-dimensional linear weight")
    features = fused_features()
    probabilities = np.issubdtype(np.asarray(target).dtype, np.floating)
    if probabilities and "probability targets" not in features:
        raise Unsupported("probability targets")
    class_weights = s.kwargs.get("weight") is not None
    if class_weights and "class weights" not in features:
        raise Unsupported("class weights")
    reduction = s.kwargs.get("reduction", "mean")
    ignore_index = s.kwargs.get("ignore_index")
    kwargs = {
        "reduction": reduction,
        "ignore_index": -100 if ignore_index is None else ignore_index,
        "label_smoothing": s.kwargs.get("label_smoothing", 0.0),
    }
    unbatched = _ndim(s.input) == 1  # torch's (D,) input with a 0-d (or (C,)) target

    def run(j: Sample):
        hidden, labels = j.input, jnp.asarray(j.args[1])
        if unbatched:
            hidden, labels = hidden[None], labels[None]
        weights = {"weight": j.kwargs["weight"]} if class_weights else {}
        # `options` (torch's chunking strategy) has no bearing on the value: jaxreg's
        # fused loss always walks the vocabulary in chunks.
        out = jaxreg.fused_linear_cross_entropy(
            hidden, j.args[0].T, labels, bias=j.kwargs.get("linear_bias"), **kwargs, **weights
        )
        return out[0] if unbatched and reduction == "none" else out

    return run


#: The torch operators (OpInfo ``name`` or ``name.variant``) and their adapters.
OPS: dict[str, Adapter] = {
    "softmax": _softmax(jaxreg.softmax),
    "softmax.with_dtype": _softmax(jaxreg.softmax),
    "log_softmax": _softmax(jaxreg.log_softmax),
    "log_softmax.with_dtype": _softmax(jaxreg.log_softmax),
    "logsumexp": _logsumexp,
    "nn.functional.cross_entropy": _cross_entropy,
    "nn.functional.nll_loss": _nll_loss,
    "nn.functional.kl_div": _kl_div,
    "nn.functional.binary_cross_entropy_with_logits": _bce_with_logits,
    "nn.functional.mse_loss": _mse_loss,
    "sigmoid": _elementwise(jaxreg.sigmoid),
    "tanh": _elementwise(jaxreg.tanh),
    "nn.functional.relu": _elementwise(jaxreg.relu),
    "nn.functional.leaky_relu": _leaky_relu,
    "nn.functional.prelu": _prelu,
    "nn.functional.elu": _elu,
    "nn.functional.glu": _glu,
    "nn.functional.silu": _elementwise(jaxreg.silu),
    "linalg.vector_norm": _vector_norm,
    "linalg.matrix_norm": _matrix_norm,
    "masked.norm": _masked_norm,
    "linalg.norm": _linalg_norm,
    "linalg.norm.subgradients_at_zero": _linalg_norm,
    "xlogy": _xlogy,
    "special.entr": _entr,
    "nn.functional.linear_cross_entropy": _linear_cross_entropy,
    "nn.functional.linear_cross_entropy.chunked": _linear_cross_entropy,
    "nn.functional.linear_cross_entropy.chunked_none": _linear_cross_entropy,
}

_SCALAR_DIM = (
    "torch treats a 0-d input as a one-element vector, so dim=0 and dim=-1 exist; jaxreg's "
    "axis must exist (pass x[None], or axis=None): a deliberate non-feature"
)

#: Per op: rule -> why jaxreg deliberately lacks it. Every sample an adapter refuses
#: names one of its op's rules; every rule here is used by some sample.
UNSUPPORTED: dict[str, dict[str, str]] = {
    **{
        op: {"0-d input with dim": _SCALAR_DIM}
        for op in (
            "softmax",
            "softmax.with_dtype",
            "log_softmax",
            "log_softmax.with_dtype",
            "logsumexp",
            "linalg.vector_norm",
            "masked.norm",
        )
    },
    **{
        op: {
            "K-dimensional linear weight": (
                "a linear weight (C, d1..dK, D) with K-dimensional logits (N, C, d1..dK): "
                "jaxreg's fused loss takes one (D, V) projection of (N, D) rows; flatten the "
                "positions into rows first"
            ),
            # Used only while fused_linear_cross_entropy lacks them (fused_features()):
            "probability targets": (
                "probability (soft) targets in fused_linear_cross_entropy: issue 13 Part B, "
                "a separate change; mapped as soon as the function accepts them"
            ),
            "class weights": (
                "class weights in fused_linear_cross_entropy: issue 13 Part A, a separate "
                "change; mapped as soon as the function takes torch's `weight=`"
            ),
        }
        for op in (
            "nn.functional.linear_cross_entropy",
            "nn.functional.linear_cross_entropy.chunked",
            "nn.functional.linear_cross_entropy.chunked_none",
        )
    },
}

Masks = tuple[list[Any], list[Any]]


@dataclasses.dataclass(frozen=True)
class Convention:
    """Where jaxreg's documented convention differs from torch, and what jaxreg gives.

    ``entries(sample, diff, torch_values)`` returns boolean masks (or ``None``) over each
    output and over the gradient of each differentiated array of ``diff`` (the sample's
    floating tensors, in order); there jaxreg is checked against ``jaxreg``
    (``"zero"``, ``"nan"`` or ``"any"``) instead of against torch's value.
    """

    reason: str
    entries: Callable[[Sample, list[Any], list[np.ndarray]], Masks]
    jaxreg: str


def _operands(s: Sample) -> list[np.ndarray]:
    """The input and the numeric positional arguments of an elementwise op (Python numbers
    too), as float64 arrays."""
    numeric = [a for a in (s.input, *s.args) if isinstance(a, (np.ndarray, float, int))]
    return [np.asarray(a, np.float64) for a in numeric]


def _to_shape(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A mask over the broadcast shape reduced ("any") to an operand's shape."""
    lead = mask.ndim - len(shape)
    mask = mask.any(axis=tuple(range(lead))) if lead else mask
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and mask.shape[i] != 1)
    return mask.any(axis=axes, keepdims=True) if axes else mask


def _nonfinite_elementwise(s: Sample, diff: list[Any], values: list[np.ndarray]) -> Masks:
    """Gradient entries at a NaN operand or a non-finite value of an elementwise op."""
    bad = ~np.isfinite(values[0])
    for x in _operands(s):
        bad = bad | np.isnan(x)
    return [None], [_to_shape(bad, np.shape(d)) for d in diff]


def _zero_matrix(s: Sample, diff: list[Any], values: list[np.ndarray]) -> Masks:
    singular = s.arg(0, "ord") in ("nuc", 2, -2) and not np.any(diff[0])
    return [None], [np.full(np.shape(diff[0]), singular)]


def _xlogy_zero_zero(s: Sample, diff: list[Any], values: list[np.ndarray]) -> Masks:
    """The gradient in ``y`` where ``x = y = 0``."""
    x, y = np.broadcast_arrays(*_operands(s))
    both = (x == 0) & (y == 0)
    return [None], [_to_shape(both, np.shape(d)) if d is s.args[0] else None for d in diff]


def _entr_negative(s: Sample, diff: list[Any], values: list[np.ndarray]) -> Masks:
    return [np.asarray(s.input) < 0], [None]


def _entr_zero(s: Sample, diff: list[Any], values: list[np.ndarray]) -> Masks:
    return [None], [np.asarray(s.input) == 0]


_NONFINITE = Convention(
    "gradients where an input is NaN or the value is not finite are not compared: NaN in, "
    "NaN out concerns values ('gradients at NaN entries: anything'), and at an infinite "
    "value the zero cotangent meets an infinite partial derivative (0·inf: NaN in JAX, "
    "skipped by torch)",
    _nonfinite_elementwise,
    "any",
)

#: Per op: convention -> where jaxreg's documented convention differs from torch.
CONVENTIONS: dict[str, dict[str, Convention]] = {
    **{op: {"non-finite": _NONFINITE} for op in ("nn.functional.elu", "xlogy", "special.entr")},
    "linalg.norm.subgradients_at_zero": {
        "zero matrix": Convention(
            "at an all-zero matrix the 'nuc', 2 and -2 norms have gradient 0 (jaxreg's one "
            "rule for every norm at zero); torch returns a U Vᵀ-style subgradient",
            _zero_matrix,
            "zero",
        )
    },
}
CONVENTIONS["xlogy"]["x = y = 0"] = Convention(
    "xlogy(0, 0) = 0 is held constant: its derivative in y is 0 (torch: 0/0 = NaN)",
    _xlogy_zero_zero,
    "zero",
)
CONVENTIONS["special.entr"] |= {
    "x < 0": Convention(
        "-x·log x outside its domain: jaxreg.entropy gives NaN for a negative probability "
        "(NaN in the domain sense), torch.special.entr gives -inf",
        _entr_negative,
        "nan",
    ),
    "x = 0": Convention(
        "0·log 0 = 0 is held constant: gradient 0 at x = 0 (torch: the derivative's limit, "
        "-(1 + log 0) = inf)",
        _entr_zero,
        "zero",
    ),
}


# --- running the samples ------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What happened to one sample in one dtype."""

    op: str
    dtype: str
    index: int
    description: str
    status: str  # "match", "unsupported", "convention", "mismatch", "error"
    detail: str = ""
    used: tuple[str, ...] = ()  # the rule or conventions it needed


def describe(sample: Any) -> str:
    """A short, stable description of a sample: shapes, dtypes and arguments."""

    def one(x: Any) -> str:
        if isinstance(x, torch.Tensor):
            kind = "" if x.dtype.is_floating_point else str(x.dtype).removeprefix("torch.")
            return f"T{list(x.shape)}{kind}"
        if isinstance(x, float):
            return f"{x:.4g}"
        return repr(x)

    parts = [one(sample.input)]
    parts += [one(a) if not isinstance(a, (list, tuple)) else repr(a) for a in sample.args]
    parts += [f"{k}={one(v)}" for k, v in sample.kwargs.items()]
    return ", ".join(parts)


@functools.cache
def _op_db() -> dict[str, Any]:
    """torch's OpInfo database by ``name[.variant]``, imported without its side effects.

    Importing it freezes ``torch.backends`` flags (torch's own test-suite guard, which
    would make every later ``parity_settings()`` raise) and adds warning filters; both
    are undone here.
    """
    frozen = torch.backends.flags_frozen()
    with warnings.catch_warnings():
        from torch.testing._internal.common_methods_invocations import op_db
    if not frozen:  # torch.backends.disable_global_flags() has no public inverse
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    return {
        op.name + (f".{op.variant_test_name}" if op.variant_test_name else ""): op for op in op_db
    }


def samples(op_name: str, dtype: str) -> list[Any]:
    """The op's reference inputs (its sample inputs and the extra reference ones), drawn
    with a fixed seed so every run sees the same values."""
    op = _op_db()[op_name]
    with torch.random.fork_rng():
        torch.manual_seed(zlib.crc32(f"{op_name}/{dtype}".encode()))
        return list(op.reference_inputs("cpu", getattr(torch, dtype), requires_grad=True))


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _tree(sample: Any) -> tuple[list[Any], Any]:
    return pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))


def _sample(tree: tuple[Any, Any, Any]) -> Sample:
    return Sample(tree[0], tuple(tree[1]), dict(tree[2]))


@dataclasses.dataclass
class Planned:
    """A mapped sample: its leaves (NumPy), which are differentiated, and the JAX call."""

    index: int
    description: str
    leaves: list[Any]
    spec: Any
    diff: list[int]  # positions of the floating leaves torch differentiates
    run: Callable[[Sample], Any]

    def jax_fn(self, *diff_leaves: jax.Array) -> Any:
        leaves = [jnp.asarray(x) if isinstance(x, np.ndarray) else x for x in self.leaves]
        for i, value in zip(self.diff, diff_leaves, strict=True):
            leaves[i] = value
        return self.run(_sample(pytree.tree_unflatten(leaves, self.spec)))


def plan(op_name: str, sample: Any, index: int) -> Planned:
    """The sample mapped through the op's adapter (which may raise :class:`Unsupported`)."""
    leaves, spec = _tree(sample)
    np_leaves = [_numpy(x) for x in leaves]
    run = OPS[op_name](_sample(pytree.tree_unflatten(np_leaves, spec)))
    diff = [
        i
        for i, x in enumerate(leaves)
        if isinstance(x, torch.Tensor) and x.dtype.is_floating_point and x.requires_grad
    ]
    return Planned(index, describe(sample), np_leaves, spec, diff, run)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's own warnings about its arguments (kl_div's ``'mean'``, the chunked
    linear cross-entropy's fallbacks) are not jaxreg's business here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def torch_run(op_name: str, planned: Planned, cotangents: list[np.ndarray] | None):
    """torch's values, and its gradients for ``cotangents`` (fresh leaf tensors)."""
    leaves = []
    for i, x in enumerate(planned.leaves):
        if isinstance(x, np.ndarray):
            t = torch.from_numpy(x.copy())
            if i in planned.diff:
                t.requires_grad_(True)
            x = t
        leaves.append(x)
    s = _sample(pytree.tree_unflatten(leaves, planned.spec))
    with _quiet():
        out = _op_db()[op_name].op(s.input, *s.args, **s.kwargs)
    outs = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
    values = [o.detach().numpy() for o in outs]
    if cotangents is None:
        return values, None
    wrt = [leaves[i] for i in planned.diff]
    pairs = [
        (o, torch.from_numpy(c)) for o, c in zip(outs, cotangents, strict=True) if o.requires_grad
    ]
    grads: list[Any] = [None] * len(wrt)
    if pairs and wrt:
        with _quiet():
            grads = list(
                torch.autograd.grad(
                    [p[0] for p in pairs], wrt, [p[1] for p in pairs], allow_unused=True
                )
            )
    return values, [
        np.zeros(w.shape, w.detach().numpy().dtype) if g is None else g.numpy()
        for g, w in zip(grads, wrt, strict=True)
    ]


def _cotangents(values: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """A random cotangent per output, 0 where torch's value is not finite."""
    rng = np.random.default_rng(seed)
    out = []
    for v in values:
        c = rng.standard_normal(np.shape(v)).astype(v.dtype)
        out.append(np.where(np.isfinite(v), c, np.zeros_like(c)))
    return out


def compare_arrays(
    got: np.ndarray, want: np.ndarray, tol: float, what: str, skip: np.ndarray | None = None
) -> list[str]:
    """Problems between jaxreg's ``got`` and torch's ``want`` (empty when they agree),
    leaving out the entries in ``skip``."""
    if np.shape(got) != np.shape(want):
        return [f"{what}: shape {np.shape(got)} vs torch {np.shape(want)}"]
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if skip is not None:
        keep = ~np.broadcast_to(skip, g.shape)
        g, w = g[keep], w[keep]
    problems = []
    finite = np.isfinite(g) & np.isfinite(w)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    if not np.all(same[~finite]):
        bad = np.flatnonzero(~finite & ~same)
        problems.append(
            f"{what}: non-finite entries differ at {bad.size} places, e.g. jaxreg "
            f"{g.flat[bad[0]]} vs torch {w.flat[bad[0]]}"
        )
    if finite.any():
        err = float(np.max(np.abs(g[finite] - w[finite])))
        scale = max(1.0, float(np.max(np.abs(w[finite]))))
        if err > tol * scale:
            problems.append(f"{what}: error {err:.3g} over {tol:g}·{scale:.3g}")
    return problems


_EXPECT = {
    "zero": lambda a: a == 0,
    "nan": np.isnan,
    "any": lambda a: np.ones(np.shape(a), bool),
}


def _check(
    op_name: str,
    arrays: list[tuple[str, np.ndarray, np.ndarray]],
    masks_of: dict[str, list[Any]],
) -> tuple[list[str], tuple[str, ...]]:
    """Compares ``(what, jaxreg, torch)`` arrays, each with the tolerance of torch's dtype;
    the entries a convention covers are checked against the convention instead. Returns
    the problems and the conventions that explained a difference."""
    problems, used = [], set()
    for k, (what, got, want) in enumerate(arrays):
        tol = TOLERANCE[str(want.dtype)]
        if np.shape(got) != np.shape(want):
            problems.append(f"{what}: shape {np.shape(got)} vs torch {np.shape(want)}")
            continue
        g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
        skip = np.zeros(np.shape(want), bool)
        for name, masks in masks_of.items():
            if masks[k] is None or not np.any(masks[k]):
                continue
            mask = np.broadcast_to(masks[k], np.shape(want))
            expect = CONVENTIONS[op_name][name].jaxreg
            if not np.all(_EXPECT[expect](g[mask])):
                problems.append(f"{what}: jaxreg is not {expect!r} where {name!r} applies")
            if not np.all(np.isclose(g[mask], w[mask], rtol=tol, atol=tol, equal_nan=True)):
                used.add(name)  # the convention explains a real difference
            skip |= mask
        problems += compare_arrays(got, want, tol, what, skip)
    return problems, tuple(sorted(used))


def _plan_all(op_name: str, dtype: str) -> tuple[list[Outcome], list[Planned]]:
    """Every sample mapped, or its verdict: unsupported by a rule of the op, or an error."""
    outcomes, planned = [], []
    for index, sample in enumerate(samples(op_name, dtype)):
        try:
            planned.append(plan(op_name, sample, index))
        except Unsupported as verdict:
            known = verdict.rule in UNSUPPORTED.get(op_name, {})
            status = "unsupported" if known else "error"
            detail = verdict.rule if known else f"no rule {verdict.rule!r} in UNSUPPORTED"
            used = (verdict.rule,) if known else ()
            outcomes.append(Outcome(op_name, dtype, index, describe(sample), status, detail, used))
    return outcomes, planned


def _judge(op_name: str, dtype: str, p: Planned, torch_out, jax_out) -> Outcome:
    """One mapped sample's outcome: jaxreg's values and gradients against torch's."""
    (t_values, t_grads), (j_values, j_grads) = torch_out, jax_out
    j_values = [np.asarray(v) for v in jax.tree_util.tree_leaves(j_values)]
    j_grads = [np.asarray(g) for g in j_grads]
    problems = []
    if len(j_values) != len(t_values) or len(j_grads) != len(t_grads):
        problems.append(f"{len(j_values)} outputs vs torch's {len(t_values)}")
    problems += [
        f"value[{k}]: dtype {jv.dtype} vs torch {tv.dtype}"
        for k, (jv, tv) in enumerate(zip(j_values, t_values, strict=False))
        if jv.dtype != tv.dtype
    ]
    sample = _sample(pytree.tree_unflatten(p.leaves, p.spec))
    diff = [p.leaves[i] for i in p.diff]
    masks_of = {}
    for name, convention in CONVENTIONS.get(op_name, {}).items():
        value_masks, grad_masks = convention.entries(sample, diff, t_values)
        masks_of[name] = [*value_masks, *grad_masks]
    arrays = [
        *[(f"value[{k}]", *pair) for k, pair in enumerate(zip(j_values, t_values, strict=False))],
        *[(f"grad[{k}]", *pair) for k, pair in enumerate(zip(j_grads, t_grads, strict=False))],
    ]
    found, used = _check(op_name, arrays, masks_of)
    problems += found
    status = "mismatch" if problems else ("convention" if used else "match")
    detail = "; ".join(problems) if problems else ", ".join(used)
    return Outcome(op_name, dtype, p.index, p.description, status, detail, used)


def run_op(op_name: str, dtype: str) -> list[Outcome]:
    """Every sample of one op in one dtype: mapped, run (one compiled program), judged."""
    outcomes, planned = _plan_all(op_name, dtype)
    ready = []
    for p in planned:
        # Each call is traced alone first (no compilation): an error is that sample's.
        try:
            with parity_settings():
                jax.eval_shape(p.jax_fn, *[jnp.asarray(p.leaves[i]) for i in p.diff])
        except Exception as error:  # noqa: BLE001 (reported as the sample's outcome)
            detail = f"{type(error).__name__}: {error}"
            outcomes.append(Outcome(op_name, dtype, p.index, p.description, "error", detail))
            continue
        values, _ = torch_run(op_name, p, None)
        cotangents = _cotangents(values, p.index)
        ready.append((p, cotangents, torch_run(op_name, p, cotangents)))
    with parity_settings():
        results = _jax_all(ready) if ready else []
    for (p, _, torch_out), jax_out in zip(ready, results, strict=True):
        outcomes.append(_judge(op_name, dtype, p, torch_out, jax_out))
    return sorted(outcomes, key=lambda o: o.index)


def _jax_all(ready: list[Any]) -> list[tuple[Any, list[Any]]]:
    """Values and VJPs of every mapped sample of an op, as one compiled program."""
    fns = [p.jax_fn for p, *_ in ready]

    def all_samples(diff_leaves, cotangents):
        out = []
        for fn, leaves, cots in zip(fns, diff_leaves, cotangents, strict=True):
            value, pullback = jax.vjp(fn, *leaves)
            flat, treedef = jax.tree_util.tree_flatten(value)
            cts = [c.astype(v.dtype) for c, v in zip(cots, flat, strict=True)]
            out.append((value, list(pullback(jax.tree_util.tree_unflatten(treedef, cts)))))
        return out

    diff = [[jnp.asarray(p.leaves[i]) for i in p.diff] for p, *_ in ready]
    cotangents = [[jnp.asarray(c) for c in cots] for _, cots, *_ in ready]
    return jax.jit(all_samples)(diff, cotangents)


# --- the tests ----------------------------------------------------------------------------

#: The torch operators the issue names, by OpInfo name: each must be in :data:`OPS`.
MIRRORED = (
    "softmax",
    "log_softmax",
    "logsumexp",
    "nn.functional.cross_entropy",
    "nn.functional.nll_loss",
    "nn.functional.kl_div",
    "nn.functional.binary_cross_entropy_with_logits",
    "nn.functional.mse_loss",
    "sigmoid",
    "tanh",
    "nn.functional.relu",
    "nn.functional.leaky_relu",
    "nn.functional.prelu",
    "nn.functional.elu",
    "nn.functional.glu",
    "nn.functional.silu",
    "linalg.vector_norm",
    "linalg.matrix_norm",
    "linalg.norm",
    "xlogy",
    "special.entr",
    "nn.functional.linear_cross_entropy",
)


def test_the_operators_and_their_variants_are_all_run() -> None:
    """Every operator the issue names, and every OpInfo variant of it (``with_dtype``,
    ``chunked``, ...), has an adapter; every adapter names an operator torch has."""
    db = _op_db()
    variants = {key for key in db if any(key == m or key.startswith(f"{m}.") for m in MIRRORED)}
    # silu's "complex" variant runs complex dtypes only: a deliberate non-feature.
    assert variants - set(OPS) == {"nn.functional.silu.complex"}
    assert set(OPS) <= set(db)
    assert set(UNSUPPORTED) <= set(OPS) and set(CONVENTIONS) <= set(OPS)


def test_importing_the_database_keeps_torch_settings_mutable() -> None:
    _op_db()
    assert not torch.backends.flags_frozen()
    with parity_settings():  # sets torch.backends flags: raises if they are frozen
        pass


def test_a_wrong_mapping_and_an_unknown_rule_are_caught(monkeypatch) -> None:
    """The checker is not vacuous: softmax mapped to log_softmax mismatches, and an
    adapter refusing with a rule that is not in the table is an error."""
    monkeypatch.setitem(OPS, "softmax", _softmax(jaxreg.log_softmax))
    statuses = [o.status for o in run_op("softmax", "float64")]
    # every non-empty sample mismatches (an empty one has nothing to differ in)
    assert statuses.count("mismatch") == 5 and statuses.count("match") == 1
    monkeypatch.setitem(UNSUPPORTED, "softmax", {})
    assert "error" in {o.status for o in run_op("softmax", "float64")}


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_every_sample_matches_or_is_explained(op_name: str) -> None:
    """Every sample, float64 and float32: a match (values and gradients), a documented
    convention, or a documented non-feature; and every rule and convention of the op
    is needed by some sample."""
    outcomes = [o for dtype in DTYPES for o in run_op(op_name, dtype)]
    bad = [o for o in outcomes if o.status in ("mismatch", "error")]
    assert not bad, "\n".join(
        f"[{o.dtype}] #{o.index} {o.description}: {o.status}: {o.detail}" for o in bad
    )
    assert any(o.status in ("match", "convention") for o in outcomes), "nothing compared"
    used = {name for o in outcomes for name in o.used}
    stale = (set(UNSUPPORTED.get(op_name, {})) | set(CONVENTIONS.get(op_name, {}))) - used
    if op_name.startswith("nn.functional.linear_cross_entropy"):
        stale -= fused_features()  # rules for features that have landed since
    assert not stale, f"rules or conventions no sample needs (remove them): {sorted(stale)}"


def unsupported_table() -> list[tuple[str, str, str]]:
    """``(op, sample, reason)`` for every sample jaxreg deliberately does not run (float64)."""
    return [
        (o.op, o.description, UNSUPPORTED[o.op][o.detail])
        for op_name in OPS
        for o in run_op(op_name, "float64")
        if o.status == "unsupported"
    ]


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    if args == ["--unsupported"]:
        for op_name, description, reason in unsupported_table():
            print(f"| {op_name} | {description} | {reason} |")
        sys.exit(0)
    for name in args or list(OPS):
        for dt in DTYPES:
            start = time.perf_counter()
            res = run_op(name, dt)
            counts: dict[str, int] = {}
            for o in res:
                counts[o.status] = counts.get(o.status, 0) + 1
            print(f"{name} [{dt}] {counts} {time.perf_counter() - start:.1f}s")
            for o in res:
                if o.status in ("mismatch", "error"):
                    print(f"   #{o.index} {o.status}: {o.description} :: {o.detail[:300]}")
