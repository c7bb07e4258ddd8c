"""Gymnasium environments (tabletop manipulation, PointNav) and adapters. Knows nothing of the model."""
