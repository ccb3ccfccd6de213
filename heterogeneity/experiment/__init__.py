"""heterogeneity.experiment"""
