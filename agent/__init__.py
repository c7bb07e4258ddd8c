"""The runtime: rollouts, evaluation, metrics, recording and the `uio2` command line."""
