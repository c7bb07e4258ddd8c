"""Policies by name: `oracle`, `random`, `uio2` (with a model name or checkpoint)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from policies.baselines import OraclePolicy, RandomPolicy
from uio2_errors import DamagedFileError, MissingFileError, OptionError

POLICY_NAMES = ("oracle", "random", "uio2")


@dataclass(frozen=True)
class UIO2Options:
    """Options of the UIO2 policy (`--policy.NAME=VALUE` on the command line)."""

    tokenizer: str | None = None
    """SentencePiece model: LLaMA's tokenizer.model with official weights (ours: the run's or the tiny one)"""
    text_len: int | None = None
    """prompt length in tokens (default: the trained run's, else sized from the task)"""
    max_frames: int | None = None
    """history slots (default: the trained run's, else 4)"""
    template: int = 0
    """prompt template index (policies/templates.json)"""
    view: Literal["front", "top"] = "front"
    """camera of tabletop observations"""
    prompt_crop: bool = False
    """crop each VIMA prompt image to its object (policies.prompting.crop_to_object)"""
    ground_objects: bool = False
    """find each VIMA prompt object in the scene by asking the model (policies/grounding.py)"""
    method: Literal["greedy", "sample", "beam"] = "greedy"
    """decoding method"""
    temperature: float = 1.0
    """sampling temperature (method=sample)"""
    top_k: int = 0
    """sample from the k most likely tokens (0: all)"""
    top_p: float = 1.0
    """nucleus sampling mass (method=sample)"""
    num_beams: int = 4
    """beams (method=beam)"""
    packed_weights: bool | None = None
    """decode with a packed copy of the decoder's step weights (faster one-row products on CPU; large:
    about 1.5 GB more memory); default: on a CPU backend"""

    def __post_init__(self):
        checks = [
            ((self.text_len or 2) >= 2, f"--policy.text_len must be >= 2, got {self.text_len}"),
            ((self.max_frames or 1) >= 1, f"--policy.max_frames must be >= 1, got {self.max_frames}"),
            (self.template >= 0, f"--policy.template must be >= 0, got {self.template}"),
            (self.temperature > 0, f"--policy.temperature must be > 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"--policy.top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0, f"--policy.top_k must be >= 0, got {self.top_k}"),
            (self.num_beams >= 1, f"--policy.num_beams must be >= 1, got {self.num_beams}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise OptionError(message)

    def policy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `UIO2Policy` (decoding settings folded into a DecodeConfig)."""
        from uio2_core.decoding import DecodeConfig

        d = asdict(self)
        decoding = ("method", "temperature", "top_k", "top_p", "num_beams", "packed_weights")
        decode = DecodeConfig(**{k: d.pop(k) for k in decoding})
        d.pop("tokenizer")
        return {**{k: v for k, v in d.items() if v is not None}, "decode": decode}


# what a run directory's model.json records about how the model was trained (training/run.py writes it)
RUN_OPTIONS = ("text_len", "max_frames", "view", "template", "prompt_crop", "ground_objects")
RUN_TOKENIZER = "tokenizer.model"


def run_options(model: str) -> dict[str, Any]:
    """The input- and decoding-shaping options a trained run saved with its parameters ({} for a
    config name or an official checkpoint); `tokenizer` is the run's own copy, when it has one."""
    from uio2_core.config import CONFIG_NAMES

    if model in CONFIG_NAMES:
        return {}
    from uio2_core.checkpoints.ours import META_FILE, is_ours

    run = Path(model)
    if not is_ours(run):
        return {}
    try:
        meta = json.loads((run / META_FILE).read_text())
    except json.JSONDecodeError as err:
        raise DamagedFileError(f"{run / META_FILE} is damaged (not valid JSON: {err})") from err
    saved = {k: meta[k] for k in RUN_OPTIONS if meta.get(k) is not None}
    if (run / RUN_TOKENIZER).is_file():
        saved["tokenizer"] = str(run / RUN_TOKENIZER)
    return saved


def resolve_options(model: str, given: dict[str, Any]) -> dict[str, Any]:
    """The user's options over the run's saved ones; a flag that contradicts how the model was
    trained is an error naming both values."""
    saved = run_options(model)
    for key, value in given.items():
        if key in saved and key != "tokenizer" and value is not None and value != saved[key]:
            raise OptionError(
                f"--policy.{key}={value} contradicts the trained model in {model} ({key}={saved[key]}, "
                f"saved in its model.json); leave --policy.{key} out"
            )
    return {**saved, **{k: v for k, v in given.items() if v is not None}}


def _vocabulary(model: str, tokenizer: str | None) -> Any:
    from uio2_core.config import CONFIG_NAMES
    from uio2_core.vocab import Vocabulary, tiny_vocabulary

    if tokenizer:
        if not Path(tokenizer).is_file():
            raise MissingFileError(f"--policy.tokenizer: no such file {tokenizer}")
        return Vocabulary.load(tokenizer)
    if model not in CONFIG_NAMES:
        from uio2_core.checkpoints.ours import is_ours

        if Path(model).exists() and not is_ours(model):
            raise OptionError(
                f"{model} holds official weights, which need LLaMA's SentencePiece model: give "
                "--policy.tokenizer=/path/to/tokenizer.model (the packaged tiny one does not match them)"
            )
    return tiny_vocabulary()


def load_uio2(model: str = "tiny", *, seed: int = 0, tokenizer: str | None = None) -> tuple[Any, Any, str]:
    """(model, vocabulary, description). A config name builds randomly initialised weights (seeded);
    a path loads a checkpoint: official HF / T5X (with `tokenizer`, LLaMA's) or ours (e.g. a
    `uio2 train` run dir, with the tokenizer it was trained with), without VQ-GANs."""
    from uio2_core.config import CONFIG_NAMES, get_config
    from uio2_core.model import build_model

    vocab = _vocabulary(model, tokenizer or run_options(model).get("tokenizer"))
    if model in CONFIG_NAMES:
        return (
            build_model(get_config(model), seed=seed, with_vqgan=False),
            vocab,
            f"{model} (random init, seed {seed})",
        )
    if not Path(model).exists():
        raise MissingFileError(
            f"--model {model}: no such checkpoint (expected {', '.join(CONFIG_NAMES)} or a directory)"
        )
    from uio2_core.checkpoints.formats import load_model

    return load_model(model, with_vqgan=False), vocab, model


def make_policy(name: str, *, model: str = "tiny", seed: int = 0, **kwargs: Any) -> Any:
    """`kwargs`: `UIO2Options` fields (the uio2 policy; unset ones come from a trained run's saved
    options); the baselines take none."""
    if name == "oracle":
        _no_options(name, kwargs)
        return OraclePolicy()
    if name == "random":
        _no_options(name, kwargs)
        return RandomPolicy(seed)
    if name == "uio2":
        from policies.uio2_policy import UIO2Policy

        unknown = sorted(set(kwargs) - {f.name for f in fields(UIO2Options)})
        if unknown:
            raise OptionError(f"unknown uio2 policy option(s) {', '.join(unknown)}")
        options = UIO2Options(**resolve_options(model, kwargs))
        net, vocab, description = load_uio2(model, seed=seed, tokenizer=options.tokenizer)
        policy = UIO2Policy(net, vocab, seed=seed, **options.policy_kwargs())
        policy.description = description
        return policy
    raise OptionError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)} or remote://HOST:PORT")


def _no_options(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        flags = ", ".join(f"--policy.{k}" for k in kwargs)
        raise OptionError(f"the {name} policy takes no options, got {flags}")
