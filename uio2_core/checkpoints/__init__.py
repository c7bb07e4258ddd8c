"""Checkpoint formats: official HF (PyTorch) and T5X imports/exports, our orbax checkpoints, conversion.

Submodules are imported on demand so that torch / tensorstore stay optional.
"""
