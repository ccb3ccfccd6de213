"""heterogeneity.metrics: gradient heterogeneity, weighted Hessian norms, spectrum divergences,
attention statistics and ℓ∞ geometry.

* `_gradient`: full-batch block gradient norms, normalized shares, Gini, layer ratios (seed 000 App. C.2, D.5)
* `_lambda`: Λ_G, Λ_P (seed 000 Def. 4.5) and their trajectory version (App. D.9, Table S.9)
* `_correlation`: gradient–Hessian and gradient–noise correlations, σ₂ of Assumption 4.8 (seed 000 Figs. 1–2)
* `_divergence`: JS divergence / distance, symmetric KL, pairwise matrices and JS⁰ (seed 001 §2.3, §2.6)
* `_attention`: attention entropy ratios and Q/K/V gradient ratios (seed 000 App. F.5)
* `_geometry`: (1,1)-norm / spectral-norm geometry and Φ-smoothness (seed 003 Def. 3.9, Table 1)
* `_logging`: `log_block_stats`, an Optax transform recording block norms, shares and Gini
"""
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
    BlockLinfGeometry,
    LinfGeometry,
    LinfReport,
    PhiSmoothness,
    PhiSmoothnessBounds,
    block_norm_matrix,
    blockwise_linf_geometry,
    dense_linf_report,
    estimate_linf_report,
    linf_geometry,
    phi_smoothness,
    phi_smoothness_bounds,
)
from heterogeneity.metrics._gradient import (
    BlockGradNorms,
    FullBatchGradient,
    GradientHeterogeneity,
    LayerRatios,
    block_grad_norms,
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
    block_hessian_norms,
    lambda_norms,
    weighted_hessian_norms,
    weighted_hessian_norms_trajectory,
)
from heterogeneity.metrics._logging import BlockStatsState, find_block_stats, log_block_stats

__all__ = [
    "AttentionEntropy", "LayerAttentionEntropy", "QKVRatios", "attention_entropy_ratio",
    "layerwise_attention_entropy", "qkv_grad_ratios", "CoordinateNoise", "Correlation", "coordinate_noise",
    "gradient_hessian_correlation", "log_correlation", "noise_statistics", "pearson", "rankdata", "spearman",
    "PAPER_SIGMA2", "PairwiseDivergence", "js_distance", "js_divergence", "kl_divergence", "mean_offdiagonal",
    "pairwise_divergence", "spectral_scale", "spectrum_divergence", "symmetric_kl", "BlockLinfGeometry",
    "LinfGeometry", "LinfReport", "PhiSmoothness", "PhiSmoothnessBounds", "block_norm_matrix",
    "blockwise_linf_geometry", "dense_linf_report", "estimate_linf_report", "linf_geometry",
    "phi_smoothness", "phi_smoothness_bounds", "BlockGradNorms", "FullBatchGradient", "GradientHeterogeneity",
    "LayerRatios", "block_grad_norms", "full_batch_grad", "full_batch_gradient_heterogeneity", "gini",
    "gradient_heterogeneity", "layer_ratios", "normalized_shares", "WeightedHessianNorms",
    "WeightedHessianNormsTrajectory", "align_blocks", "block_hessian_norms", "lambda_norms",
    "weighted_hessian_norms", "weighted_hessian_norms_trajectory", "BlockStatsState", "find_block_stats",
    "log_block_stats",
]
