"""jaxreg: regularization and information theory for deep learning, in JAX.

Pure, jit-compatible functions and optax transforms: norms with safe gradients,
L1/L2/elastic-net/group-lasso penalties over pytrees, stable
logsumexp/softmax/cross-entropy/KL/entropies, torch-semantics losses,
activations up to SwiGLU, Xavier/Kaiming init, flax.nnx layers, regularized
optimizers with proximal steps, norm-convergence tracking, ridge/lasso solution
paths, and a fused linear cross-entropy that never builds the logits.

``torch_ref`` is the PyTorch twin with the same names; ``parity_tests`` proves
both agree. jaxreg itself never imports torch.
"""

# ruff: noqa: I001 (one section per module, in the order of the README's Layout)

# norms
from jaxreg.norms import frobenius_norm as frobenius_norm
from jaxreg.norms import global_norm as global_norm
from jaxreg.norms import l1_norm as l1_norm
from jaxreg.norms import l2_norm as l2_norm
from jaxreg.norms import matrix_norm as matrix_norm
from jaxreg.norms import vector_norm as vector_norm

# penalties
from jaxreg.penalties import elastic_net_penalty as elastic_net_penalty
from jaxreg.penalties import group_lasso_penalty as group_lasso_penalty
from jaxreg.penalties import l1_penalty as l1_penalty
from jaxreg.penalties import l2_penalty as l2_penalty
from jaxreg.penalties import weights_only as weights_only

# information
from jaxreg.information import cross_entropy as cross_entropy
from jaxreg.information import entropy as entropy
from jaxreg.information import entropy_from_logits as entropy_from_logits
from jaxreg.information import js_divergence as js_divergence
from jaxreg.information import kl_div as kl_div
from jaxreg.information import kl_divergence as kl_divergence
from jaxreg.information import kl_divergence_from_logits as kl_divergence_from_logits
from jaxreg.information import log_softmax as log_softmax
from jaxreg.information import logsumexp as logsumexp
from jaxreg.information import self_information as self_information
from jaxreg.information import softmax as softmax
from jaxreg.information import xlogy as xlogy

# losses
from jaxreg.losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from jaxreg.losses import mse_loss as mse_loss
from jaxreg.losses import nll_loss as nll_loss
from jaxreg.losses import softmax_cross_entropy as softmax_cross_entropy
from jaxreg.losses import squared_loss as squared_loss

# activations
from jaxreg.activations import elu as elu
from jaxreg.activations import glu as glu
from jaxreg.activations import leaky_relu as leaky_relu
from jaxreg.activations import prelu as prelu
from jaxreg.activations import relu as relu
from jaxreg.activations import sigmoid as sigmoid
from jaxreg.activations import silu as silu
from jaxreg.activations import swiglu as swiglu
from jaxreg.activations import swish as swish
from jaxreg.activations import tanh as tanh

# init
from jaxreg.init import fan_in_and_fan_out as fan_in_and_fan_out
from jaxreg.init import kaiming_normal as kaiming_normal
from jaxreg.init import kaiming_uniform as kaiming_uniform
from jaxreg.init import xavier_normal as xavier_normal
from jaxreg.init import xavier_uniform as xavier_uniform

# nn
from jaxreg.nn import dropout as dropout
from jaxreg.nn import Linear as Linear
from jaxreg.nn import MLP as MLP
from jaxreg.nn import SwiGLUFeedForward as SwiGLUFeedForward

# optim
from jaxreg.optim import adam as adam
from jaxreg.optim import adamw as adamw
from jaxreg.optim import sgd as sgd

# proximal
from jaxreg.proximal import elastic_net_proximal as elastic_net_proximal
from jaxreg.proximal import group_lasso_proximal as group_lasso_proximal
from jaxreg.proximal import l1_proximal as l1_proximal
from jaxreg.proximal import proximal_sgd as proximal_sgd

# convergence
from jaxreg.convergence import convergence_init as convergence_init
from jaxreg.convergence import convergence_update as convergence_update
from jaxreg.convergence import ConvergenceState as ConvergenceState
from jaxreg.convergence import MinimizeResult as MinimizeResult
from jaxreg.convergence import has_converged as has_converged
from jaxreg.convergence import minimize as minimize

# diagnostics
from jaxreg.diagnostics import activation_entropy as activation_entropy
from jaxreg.diagnostics import confidence_penalty as confidence_penalty
from jaxreg.diagnostics import entropy_report as entropy_report
from jaxreg.diagnostics import error_entropy as error_entropy
from jaxreg.diagnostics import gradient_entropy as gradient_entropy
from jaxreg.diagnostics import histogram_entropy as histogram_entropy
from jaxreg.diagnostics import magnitude_entropy as magnitude_entropy
from jaxreg.diagnostics import output_entropy as output_entropy
from jaxreg.diagnostics import parameter_entropy as parameter_entropy

# solvers
from jaxreg.solvers import elastic_net as elastic_net
from jaxreg.solvers import lasso as lasso
from jaxreg.solvers import regularization_path as regularization_path
from jaxreg.solvers import ridge as ridge
from jaxreg.solvers import SolverInfo as SolverInfo

# fused
from jaxreg.fused import CrossEntropyAux as CrossEntropyAux
from jaxreg.fused import fused_linear_cross_entropy as fused_linear_cross_entropy
from jaxreg.fused import vocab_parallel_cross_entropy as vocab_parallel_cross_entropy
from jaxreg.fused import (
    vocab_parallel_fused_linear_cross_entropy as vocab_parallel_fused_linear_cross_entropy,
)

__version__ = "0.1.0"

from types import ModuleType as _ModuleType  # noqa: E402

# Every name imported above (not the submodules themselves) is public.
__all__ = sorted(
    name
    for name, value in dict(globals()).items()
    if not name.startswith("_") and not isinstance(value, _ModuleType)
)
