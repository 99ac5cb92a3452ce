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
# --- init
# --- nn
# --- optim
# --- convergence
# --- diagnostics
# --- solvers
# --- fused
