"""heterogeneity.problems"""
