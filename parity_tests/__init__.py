"""Parity suite: jaxreg against torch_ref (and raw torch), values and gradients.

``python -m parity_tests`` prints the parity report; ``pytest parity_tests`` runs
the same comparisons plus hypothesis-generated inputs and the edge cases of the
convention table.
"""
