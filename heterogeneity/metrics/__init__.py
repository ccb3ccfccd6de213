"""heterogeneity.metrics"""
