"""heterogeneity.optim"""
