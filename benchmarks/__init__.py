"""Speed and memory of jaxreg against the anchors (``python -m benchmarks``)."""

import os

# Idle OpenMP threads (torch's) sleep instead of spinning, so that they do not steal
# the cores from the JAX candidate that is timed next.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
