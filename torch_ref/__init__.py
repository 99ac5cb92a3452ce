"""torch_ref: the PyTorch twin of jaxreg.

The same module names, public names and argument order as ``jaxreg``, built on
torch's own functions wherever torch has them (``F.cross_entropy``,
``torch.linalg``, ``F.silu``, ``nn.init``, ``torch.optim``) and adding only
jaxreg's documented conventions where raw torch differs. The class axis is last,
as in jaxreg. ``torch_ref.bridge`` copies weights between torch modules and
flax.nnx modules.
"""

# ruff: noqa: I001 (one section per module, in the order of the README's Layout)

# norms
from torch_ref.norms import frobenius_norm as frobenius_norm
from torch_ref.norms import global_norm as global_norm
from torch_ref.norms import l1_norm as l1_norm
from torch_ref.norms import l2_norm as l2_norm
from torch_ref.norms import matrix_norm as matrix_norm
from torch_ref.norms import vector_norm as vector_norm

# penalties
from torch_ref.penalties import elastic_net_penalty as elastic_net_penalty
from torch_ref.penalties import group_lasso_penalty as group_lasso_penalty
from torch_ref.penalties import l1_penalty as l1_penalty
from torch_ref.penalties import l2_penalty as l2_penalty
from torch_ref.penalties import weights_only as weights_only

# information
from torch_ref.information import cross_entropy as cross_entropy
from torch_ref.information import entropy as entropy
from torch_ref.information import entropy_from_logits as entropy_from_logits
from torch_ref.information import js_divergence as js_divergence
from torch_ref.information import kl_div as kl_div
from torch_ref.information import kl_divergence as kl_divergence
from torch_ref.information import kl_divergence_from_logits as kl_divergence_from_logits
from torch_ref.information import log_softmax as log_softmax
from torch_ref.information import logsumexp as logsumexp
from torch_ref.information import self_information as self_information
from torch_ref.information import softmax as softmax
from torch_ref.information import xlogy as xlogy

# losses
from torch_ref.losses import binary_cross_entropy_with_logits as binary_cross_entropy_with_logits
from torch_ref.losses import mse_loss as mse_loss
from torch_ref.losses import nll_loss as nll_loss
from torch_ref.losses import softmax_cross_entropy as softmax_cross_entropy
from torch_ref.losses import squared_loss as squared_loss

# activations
from torch_ref.activations import elu as elu
from torch_ref.activations import glu as glu
from torch_ref.activations import leaky_relu as leaky_relu
from torch_ref.activations import prelu as prelu
from torch_ref.activations import relu as relu
from torch_ref.activations import sigmoid as sigmoid
from torch_ref.activations import silu as silu
from torch_ref.activations import swiglu as swiglu
from torch_ref.activations import swish as swish
from torch_ref.activations import tanh as tanh

# init
from torch_ref.init import fan_in_and_fan_out as fan_in_and_fan_out
from torch_ref.init import kaiming_normal as kaiming_normal
from torch_ref.init import kaiming_uniform as kaiming_uniform
from torch_ref.init import xavier_normal as xavier_normal
from torch_ref.init import xavier_uniform as xavier_uniform

# nn
from torch_ref.nn import dropout as dropout
from torch_ref.nn import Linear as Linear
from torch_ref.nn import MLP as MLP
from torch_ref.nn import SwiGLUFeedForward as SwiGLUFeedForward

# optim
from torch_ref.optim import adam as adam
from torch_ref.optim import adamw as adamw
from torch_ref.optim import sgd as sgd

# proximal
from torch_ref.proximal import elastic_net_proximal as elastic_net_proximal
from torch_ref.proximal import group_lasso_proximal as group_lasso_proximal
from torch_ref.proximal import l1_proximal as l1_proximal
from torch_ref.proximal import proximal_sgd as proximal_sgd

# convergence
from torch_ref.convergence import convergence_init as convergence_init
from torch_ref.convergence import convergence_update as convergence_update
from torch_ref.convergence import ConvergenceState as ConvergenceState
from torch_ref.convergence import MinimizeResult as MinimizeResult
from torch_ref.convergence import has_converged as has_converged
from torch_ref.convergence import minimize as minimize

# diagnostics
from torch_ref.diagnostics import activation_entropy as activation_entropy
from torch_ref.diagnostics import confidence_penalty as confidence_penalty
from torch_ref.diagnostics import entropy_report as entropy_report
from torch_ref.diagnostics import error_entropy as error_entropy
from torch_ref.diagnostics import gradient_entropy as gradient_entropy
from torch_ref.diagnostics import histogram_entropy as histogram_entropy
from torch_ref.diagnostics import magnitude_entropy as magnitude_entropy
from torch_ref.diagnostics import output_entropy as output_entropy
from torch_ref.diagnostics import parameter_entropy as parameter_entropy

# solvers
from torch_ref.solvers import elastic_net as elastic_net
from torch_ref.solvers import lasso as lasso
from torch_ref.solvers import regularization_path as regularization_path
from torch_ref.solvers import ridge as ridge
from torch_ref.solvers import SolverInfo as SolverInfo

# fused
from torch_ref.fused import CrossEntropyAux as CrossEntropyAux
from torch_ref.fused import fused_linear_cross_entropy as fused_linear_cross_entropy
from torch_ref.fused import vocab_parallel_cross_entropy as vocab_parallel_cross_entropy
from torch_ref.fused import (
    vocab_parallel_fused_linear_cross_entropy as vocab_parallel_fused_linear_cross_entropy,
)

from types import ModuleType as _ModuleType  # noqa: E402

# Every name imported above (not the submodules themselves) is public.
__all__ = sorted(
    name
    for name, value in dict(globals()).items()
    if not name.startswith("_") and not isinstance(value, _ModuleType)
)
