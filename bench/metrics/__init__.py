"""Metric definitions: each metric declared once and computed once, from the stored chunk stamps."""
