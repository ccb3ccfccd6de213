"""heterogeneity.data"""
