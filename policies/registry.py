"""Policies by name: `oracle`, `random`, `uio2` (with a model name or checkpoint)."""

from __future__ import annotations

from typing import Any

from policies.baselines import OraclePolicy, RandomPolicy

POLICY_NAMES = ("oracle", "random", "uio2")


def load_uio2(model: str = "tiny", *, seed: int = 0, tokenizer: str | None = None) -> tuple[Any, Any, str]:
    """(model, vocabulary, description). A config name builds randomly initialised weights (seeded);
    a path loads a checkpoint: official HF / T5X or ours (e.g. a `uio2 train` run dir), without VQ-GANs."""
    from uio2_core.config import CONFIG_NAMES, get_config
    from uio2_core.model import build_model
    from uio2_core.vocab import Vocabulary, tiny_vocabulary

    vocab = Vocabulary.load(tokenizer) if tokenizer else tiny_vocabulary()
    if model in CONFIG_NAMES:
        return (
            build_model(get_config(model), seed=seed, with_vqgan=False),
            vocab,
            f"{model} (random init, seed {seed})",
        )
    from uio2_core.checkpoints.formats import load_model

    return load_model(model, with_vqgan=False), vocab, model


def make_policy(name: str, *, model: str = "tiny", seed: int = 0, **kwargs: Any) -> Any:
    if name == "oracle":
        return OraclePolicy()
    if name == "random":
        return RandomPolicy(seed)
    if name == "uio2":
        from policies.uio2_policy import UIO2Policy

        net, vocab, description = load_uio2(model, seed=seed, tokenizer=kwargs.pop("tokenizer", None))
        policy = UIO2Policy(net, vocab, seed=seed, **kwargs)
        policy.description = description
        return policy
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
