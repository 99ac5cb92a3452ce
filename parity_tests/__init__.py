"""Parity suite: jaxreg against torch_ref (and raw torch), values and gradients,
and the same harness for your own code.

``python -m parity_tests`` (or ``jaxreg-parity``) prints the parity report, of the
built-in cases or of yours (``--cases my_module``); ``pytest parity_tests`` runs the
same comparisons plus hypothesis-generated inputs and the edge cases of the
convention table.

- :mod:`parity_tests.harness`: :func:`~parity_tests.harness.compare` one function
  pair, :func:`~parity_tests.harness.assert_close_parity`, cases and their registry;
- :mod:`parity_tests.models`: :func:`~parity_tests.models.compare_models`, a torch
  module against an nnx module, every output, parameter gradient and layer, and the
  first diverging layer;
- :mod:`parity_tests.training`: :func:`~parity_tests.training.compare_training`, N
  optimizer steps on both sides;
- :mod:`parity_tests.errors`: the tolerance tables and per-leaf errors;
  :mod:`parity_tests.naming`: which torch parameter is which nnx parameter.
"""
