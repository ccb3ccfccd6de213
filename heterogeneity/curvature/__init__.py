"""heterogeneity.curvature"""
