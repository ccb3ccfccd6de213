"""heterogeneity.metrics: gradient heterogeneity, weighted Hessian norms, spectrum divergences,
attention statistics and ℓ∞ geometry.

* `_gradient`: full-batch block gradient norms, normalized shares, Gini, layer ratios ([Tomihari25, App. C.2, D.5])
* `_lambda`: Λ_G, Λ_P ([Tomihari25, Def. 4.5]) and their trajectory version (App. D.9, Table S.9)
* `_correlation`: gradient–Hessian and gradient–noise correlations, σ₂ of Assumption 4.8 ([Tomihari25, Figs. 1–2])
* `_divergence`: JS divergence / distance, symmetric KL, pairwise matrices and `js0` ([Zhang24, §2.3, §2.6])
* `_attention`: attention entropy ratios and Q/K/V gradient ratios ([Tomihari25, App. F.5])
* `_geometry`: (1,1)-norm / spectral-norm geometry and Φ-smoothness ([Xie24, Def. 3.9, Table 1])
* `_logging`: `log_block_stats`, an Optax transform recording block norms, shares and Gini

Everything computed per block is named ``blockwise_*``; the loss-first diagnostics take
``(loss_fn, params, batch, key, *, partition, ...)`` and build a
`curvature.HessianOperator` (the operator-first forms live in `heterogeneity.curvature`).

Deprecated (removed in 0.3): ``block_grad_norms`` → `blockwise_grad_norms`, ``block_hessian_norms``
→ `blockwise_hessian_norms`, ``block_norm_matrix`` → `blockwise_norm_matrix`, ``BlockGradNorms`` →
`BlockwiseGradNorms`, ``BlockLinfGeometry`` → `BlockwiseLinfGeometry`.
"""
from heterogeneity._deprecation import deprecated_alias
from heterogeneity.metrics._attention import (
    AttentionEntropy,
    LayerAttentionEntropy,
    QKVRatios,
    attention_entropy_ratio,
    layerwise_attention_entropy,
    qkv_grad_ratios,
)
from heterogeneity.metrics._correlation import (
    CoordinateNoise,
    Correlation,
    coordinate_noise,
    gradient_hessian_correlation,
    log_correlation,
    noise_statistics,
    pearson,
    rankdata,
    spearman,
)
from heterogeneity.metrics._divergence import (
    PAPER_SIGMA2,
    PairwiseDivergence,
    js0,
    js_distance,
    js_divergence,
    kl_divergence,
    mean_offdiagonal,
    pairwise_divergence,
    spectral_scale,
    spectrum_divergence,
    symmetric_kl,
)
from heterogeneity.metrics._geometry import (
    BlockwiseLinfGeometry,
    LinfGeometry,
    LinfReport,
    PhiSmoothness,
    PhiSmoothnessBounds,
    blockwise_linf_geometry,
    blockwise_norm_matrix,
    dense_linf_report,
    estimate_linf_report,
    linf_geometry,
    phi_smoothness,
    phi_smoothness_bounds,
)
from heterogeneity.metrics._gradient import (
    BlockwiseGradNorms,
    FullBatchGradient,
    GradientHeterogeneity,
    LayerRatios,
    blockwise_grad_norms,
    full_batch_grad,
    full_batch_gradient_heterogeneity,
    gini,
    gradient_heterogeneity,
    layer_ratios,
    normalized_shares,
)
from heterogeneity.metrics._lambda import (
    WeightedHessianNorms,
    WeightedHessianNormsTrajectory,
    align_blocks,
    blockwise_hessian_norms,
    lambda_norms,
    weighted_hessian_norms,
    weighted_hessian_norms_trajectory,
)
from heterogeneity.metrics._logging import BlockStatsState, find_block_stats, log_block_stats

# deprecated names (removed in 0.3)
BlockGradNorms = BlockwiseGradNorms
BlockLinfGeometry = BlockwiseLinfGeometry
block_grad_norms = deprecated_alias(blockwise_grad_norms, "heterogeneity.metrics.block_grad_norms",
                                    "heterogeneity.metrics.blockwise_grad_norms")
block_hessian_norms = deprecated_alias(blockwise_hessian_norms, "heterogeneity.metrics.block_hessian_norms",
                                       "heterogeneity.metrics.blockwise_hessian_norms")
block_norm_matrix = deprecated_alias(blockwise_norm_matrix, "heterogeneity.metrics.block_norm_matrix",
                                     "heterogeneity.metrics.blockwise_norm_matrix")

__all__ = [
    "AttentionEntropy", "LayerAttentionEntropy", "QKVRatios", "attention_entropy_ratio",
    "layerwise_attention_entropy", "qkv_grad_ratios", "CoordinateNoise", "Correlation", "coordinate_noise",
    "gradient_hessian_correlation", "log_correlation", "noise_statistics", "pearson", "rankdata", "spearman",
    "PAPER_SIGMA2", "PairwiseDivergence", "js0", "js_distance", "js_divergence", "kl_divergence",
    "mean_offdiagonal", "pairwise_divergence", "spectral_scale", "spectrum_divergence", "symmetric_kl",
    "BlockwiseLinfGeometry", "LinfGeometry", "LinfReport", "PhiSmoothness", "PhiSmoothnessBounds",
    "blockwise_norm_matrix", "blockwise_linf_geometry", "dense_linf_report", "estimate_linf_report",
    "linf_geometry", "phi_smoothness", "phi_smoothness_bounds", "BlockwiseGradNorms", "FullBatchGradient",
    "GradientHeterogeneity", "LayerRatios", "blockwise_grad_norms", "full_batch_grad",
    "full_batch_gradient_heterogeneity", "gini", "gradient_heterogeneity", "layer_ratios", "normalized_shares",
    "WeightedHessianNorms", "WeightedHessianNormsTrajectory", "align_blocks", "blockwise_hessian_norms",
    "lambda_norms", "weighted_hessian_norms", "weighted_hessian_norms_trajectory", "BlockStatsState",
    "find_block_stats", "log_block_stats",
]
