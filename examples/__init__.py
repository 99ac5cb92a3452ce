"""Runnable, corrected reproductions of the seed experiments (``python -m examples.<name>``)."""
