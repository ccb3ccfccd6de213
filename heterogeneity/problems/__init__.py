"""heterogeneity.problems: objectives whose answers are known exactly.

* `quadratic_case` ([Zhang24, §3.1] cases 1–4), `heterogeneous_quadratic`,
  `homogeneous_quadratic` [Tomihari25, App. D.9, Table S.9], `block_quadratic` (any block spectra);
* `rotated_quadratic` / `rotated_quadratic_family` [Xie24, §4.1, Table 1, App. D.1].

Every problem is a `QuadraticProblem`: ``loss_fn(params, batch=None)``, ``init_params()``,
the dense ``hessian`` (float64), ``block_hessians``, ``partition`` (a
`heterogeneity.partition` partition, one block per params leaf), and exact block and global
quantities (``block_top_eigenvalues``, ``block_spectral_norms``, ``block_sizes``, ``trace``,
``l11_norm``, ``spectral_norm``, ``lambda_p``, ``lambda_g(params)``, ...).
"""
from heterogeneity.problems._quadratic import (
    HETEROGENEOUS_SPECTRA,
    HOMOGENEOUS_SPECTRA,
    QuadraticProblem,
    block_quadratic,
    cnn_like_spectra,
    heterogeneous_quadratic,
    homogeneous_quadratic,
    quadratic_case,
    rescale_spectra,
    spectra_from_density,
    transformer_like_spectra,
)
from heterogeneity.problems._rotated_quadratic import (
    ROTATION_TIMES,
    RotatedQuadratic,
    rotated_quadratic,
    rotated_quadratic_family,
    sigma_diagonal,
)

__all__ = [
    "QuadraticProblem",
    "block_quadratic",
    "quadratic_case",
    "heterogeneous_quadratic",
    "homogeneous_quadratic",
    "HETEROGENEOUS_SPECTRA",
    "HOMOGENEOUS_SPECTRA",
    "transformer_like_spectra",
    "cnn_like_spectra",
    "rescale_spectra",
    "spectra_from_density",
    "RotatedQuadratic",
    "ROTATION_TIMES",
    "sigma_diagonal",
    "rotated_quadratic",
    "rotated_quadratic_family",
]
