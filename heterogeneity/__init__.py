"""heterogeneity: why transformers need Adam, measured.

Subpackages: `tree` (pytree math), `partition` (parameter blocks), `curvature`
(HVP, Lanczos, SLQ, norm estimators), `optim` (Optax transforms of the four papers),
`metrics` (gradient heterogeneity, spectrum divergences), `models`, `problems`,
`data` and `experiment`.
"""
__version__ = "0.1.0"

from heterogeneity import partition, tree  # noqa: F401  (light, dependency-free of the rest)
