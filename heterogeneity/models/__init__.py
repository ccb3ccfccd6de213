"""heterogeneity.models"""
