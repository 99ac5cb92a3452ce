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

__version__ = "0.1.0"
