"""The Policy protocol, the UIO2 policy, and baselines."""
