"""Trajectories -> UIO2 examples -> sharded training -> checkpoints."""
