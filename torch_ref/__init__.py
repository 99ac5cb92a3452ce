"""torch_ref: the PyTorch twin of jaxreg.

The same module names, public names and argument order as ``jaxreg``, built on
torch's own functions wherever torch has them (``F.cross_entropy``,
``torch.linalg``, ``F.silu``, ``nn.init``, ``torch.optim``) and adding only
jaxreg's documented conventions where raw torch differs. The class axis is last,
as in jaxreg. ``torch_ref.bridge`` copies weights between torch modules and
flax.nnx modules.
"""

# --- norms
# --- penalties
# --- information
# --- losses
# --- activations
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

# --- init
from torch_ref.init import fan_in_and_fan_out as fan_in_and_fan_out
from torch_ref.init import kaiming_normal as kaiming_normal
from torch_ref.init import kaiming_uniform as kaiming_uniform
from torch_ref.init import xavier_normal as xavier_normal
from torch_ref.init import xavier_uniform as xavier_uniform

# --- nn
from torch_ref.nn import MLP as MLP
from torch_ref.nn import Linear as Linear
from torch_ref.nn import SwiGLUFeedForward as SwiGLUFeedForward
from torch_ref.nn import dropout as dropout

# --- optim
# --- convergence
# --- diagnostics
from torch_ref.diagnostics import activation_entropy as activation_entropy
from torch_ref.diagnostics import confidence_penalty as confidence_penalty
from torch_ref.diagnostics import entropy_report as entropy_report
from torch_ref.diagnostics import error_entropy as error_entropy
from torch_ref.diagnostics import gradient_entropy as gradient_entropy
from torch_ref.diagnostics import histogram_entropy as histogram_entropy
from torch_ref.diagnostics import magnitude_entropy as magnitude_entropy
from torch_ref.diagnostics import output_entropy as output_entropy
from torch_ref.diagnostics import parameter_entropy as parameter_entropy
# --- solvers
# --- fused

from types import ModuleType as _ModuleType  # noqa: E402

# Every name imported above (not the submodules themselves) is public.
__all__ = sorted(
    name
    for name, value in dict(globals()).items()
    if not name.startswith("_") and not isinstance(value, _ModuleType)
)
