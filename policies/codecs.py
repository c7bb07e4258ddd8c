"""Action codecs: env action <-> UIO2 text tokens, and the grammar that keeps decoding parseable.

Both directions use the same template, so what training teaches (`encode`) is exactly what the
policy decodes (`decode`). `grammar()` is a token automaton for the decoder's constraint hook;
`decode` never raises: anything it cannot parse becomes the codec's declared `fallback()` and is
reported as such.

VIMA (reference uio2-architecture.md section 6, vima-bench.md 5.3):
    "{k}: pick from ( x y r ) and place to ( x y r )"   suction (end effector 0)
    "{k}: push from ( x y r ) and push to ( x y r )"    spatula (end effector 1)
with x, y normalised by the action bounds and r = yaw / 360 deg, each a location token over
1000 bins (b = floor(v * 999)). The official decoder divides by 1000 instead of 999; we invert
the encoder exactly (the difference is below one bin).

PointNav (Habitat's discrete actions written as text): "stop", "move forward", "turn left",
"turn right".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from uio2_core.constraints import TokenDFA
from uio2_core.vocab import (
    EOS_ID,
    LOCATION_START,
    NUM_LOCATION_BINS,
    TEXT_VOCAB_SIZE,
    Vocabulary,
    is_location_token,
    location_token,
    location_token_to_value,
)

LOCATION_IDS = range(LOCATION_START, LOCATION_START + NUM_LOCATION_BINS)
VIMA_BOUNDS = {"low": np.array([0.25, -0.5], np.float32), "high": np.array([0.75, 0.5], np.float32)}
_PLACEHOLDER = "<extra_id_200>"  # any location token: marks a location slot in a template


class Decoded(tuple):
    """(action, ok): ok is False when the codec's fallback was used."""

    __slots__ = ()

    def __new__(cls, action: Any, ok: bool):
        return super().__new__(cls, (action, ok))

    @property
    def action(self) -> Any:
        return self[0]

    @property
    def ok(self) -> bool:
        return self[1]


class ActionCodec(Protocol):
    def encode(self, action: Any, step: int = 0) -> list[int]: ...
    def decode(self, tokens: np.ndarray | list[int], step: int = 0) -> Decoded: ...
    def grammar(self, step: int = 0) -> TokenDFA: ...
    def grammar_length(self, step: int = 0) -> int: ...
    def decode_length(self) -> int: ...
    def fallback(self) -> Any: ...


def _value_to_bin(v: float) -> int:
    if not math.isfinite(v):
        raise ValueError(f"action value {v} is not finite")
    return int(np.clip(np.floor(np.float32(v) * np.float32(999.0)), 0, NUM_LOCATION_BINS - 1))


def yaw_from_quaternion(q: np.ndarray) -> float:
    """Yaw (rad) of an xyzw quaternion, about z."""
    x, y, z, w = (float(c) for c in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def quaternion_from_yaw(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)], np.float32)


def vima_noop_action() -> dict[str, np.ndarray]:
    """Pick and place at the same spot, the workspace centre, identity rotation: moves nothing
    (anything picked there is put back where it was)."""
    centre = ((VIMA_BOUNDS["low"] + VIMA_BOUNDS["high"]) / 2).astype(np.float32)
    ident = quaternion_from_yaw(0.0)
    return {"pose0_position": centre.copy(), "pose0_rotation": ident.copy(),
            "pose1_position": centre.copy(), "pose1_rotation": ident.copy()}  # fmt: skip


def _strip_eos(tokens) -> list[int]:
    out = []
    for t in np.asarray(tokens).reshape(-1).tolist():
        if t == EOS_ID:
            break
        if t != 0:
            out.append(int(t))
    return out


@dataclass
class VimaActionCodec:
    """VIMA pose actions <-> the UIO2 step sentence."""

    vocab: Vocabulary
    num_states: int = 48  # fixed grammar size: one compiled decoder for every step number
    max_steps: int = 99
    # built grammars (device tables) and their longest sentence + EOS, per step number
    _grammars: dict[int, tuple[TokenDFA, int]] = field(default_factory=dict, repr=False, compare=False)
    grammar_builds: int = field(default=0, repr=False, compare=False)
    _longest: int | None = field(default=None, repr=False, compare=False)

    _TEMPLATES: ClassVar[dict[str, str]] = {
        "pick": "{k}: pick from ( {L} {L} {L} ) and place to ( {L} {L} {L} )",
        "push": "{k}: push from ( {L} {L} {L} ) and push to ( {L} {L} {L} )",
    }

    def _template(self, verb: str, step: int) -> str:
        return self._TEMPLATES[verb].replace("{k}", str(step + 1)).replace("{L}", _PLACEHOLDER)

    def _template_ids(self, verb: str, step: int) -> list[int]:
        return self.vocab.encode(self._template(verb, step))

    # -- action -> tokens (training) --
    @staticmethod
    def position_bins(position: np.ndarray) -> list[int]:
        """Location bins of a table (x, y), normalised by the action bounds (also how grounded prompts
        name an object's position: policies/grounding.py)."""
        lo, hi = VIMA_BOUNDS["low"], VIMA_BOUNDS["high"]
        xy = (np.asarray(position, np.float64) - lo) / (hi - lo)
        return [_value_to_bin(xy[0]), _value_to_bin(xy[1])]

    @classmethod
    def _pose_bins(cls, position: np.ndarray, rotation: np.ndarray) -> list[int]:
        yaw_deg = math.degrees(yaw_from_quaternion(np.asarray(rotation))) % 360.0
        return [*cls.position_bins(position), _value_to_bin(yaw_deg / 360.0)]

    def encode(self, action: dict[str, np.ndarray], step: int = 0, push: bool = False) -> list[int]:
        """The step sentence's token ids (no EOS) for a VIMA action dict."""
        missing = {"pose0_position", "pose0_rotation", "pose1_position", "pose1_rotation"} - set(action)
        if missing:
            raise ValueError(f"VIMA action is missing {sorted(missing)}")
        bins = self._pose_bins(action["pose0_position"], action["pose0_rotation"])
        bins += self._pose_bins(action["pose1_position"], action["pose1_rotation"])
        ids, it = [], iter(bins)
        for t in self._template_ids("push" if push else "pick", step):
            ids.append(location_token(next(it)) if is_location_token(t) else t)
        return ids

    # -- tokens -> action (policy) --
    def grammar(self, step: int = 0) -> TokenDFA:
        """The step's automaton: built once per step number and kept on the device."""
        return self._grammar(step)[0]

    def grammar_length(self, step: int = 0) -> int:
        """Decode steps the grammar needs: its longest sentence plus EOS."""
        return self._grammar(step)[1]

    def decode_length(self) -> int:
        """Decode steps to compile for: the longest sentence of any step number plus EOS. One length
        for the whole episode, so that one compiled decoder serves it ("10:" is a token longer than
        "9:"; a length per step compiled the decoder again at step 10, mid-episode). Greedy decoding
        stops at EOS, so the longer bound costs no model call."""
        if self._longest is None:
            self._longest = 1 + max(
                len(self._template_ids(verb, k)) for verb in ("pick", "push") for k in range(self.max_steps)
            )
        return self._longest

    def _grammar(self, step: int) -> tuple[TokenDFA, int]:
        if step not in self._grammars:
            alts = [
                [LOCATION_IDS if is_location_token(t) else t for t in self._template_ids(verb, step)]
                for verb in ("pick", "push")
            ]
            dfa = TokenDFA.from_sequences(alts, TEXT_VOCAB_SIZE, num_states=self.num_states)
            self.grammar_builds += 1
            self._grammars[step] = (dfa, max(len(a) for a in alts) + 1)
        return self._grammars[step]

    def decode(self, tokens, step: int = 0) -> Decoded:
        ids = _strip_eos(tokens)
        for verb in ("pick", "push"):
            template = self._template_ids(verb, step)
            if len(ids) != len(template):
                continue
            locs = []
            for want, got in zip(template, ids, strict=True):
                if is_location_token(want):
                    if not is_location_token(got):
                        break
                    locs.append(float(location_token_to_value(got)))
                elif want != got:
                    break
            else:
                return Decoded(self._action_from_values(locs), True)
        return Decoded(self.fallback(), False)

    @staticmethod
    def _action_from_values(v: list[float]) -> dict[str, np.ndarray]:
        lo, hi = VIMA_BOUNDS["low"], VIMA_BOUNDS["high"]
        out = {}
        for i, name in enumerate(("pose0", "pose1")):
            x, y, r = v[3 * i : 3 * i + 3]
            pos = lo + np.array([x, y], np.float32) * (hi - lo)
            out[f"{name}_position"] = np.clip(pos, lo, hi).astype(np.float32)
            out[f"{name}_rotation"] = quaternion_from_yaw(2 * math.pi * r)
        return out

    def fallback(self) -> dict[str, np.ndarray]:
        return vima_noop_action()

    def to_text(self, tokens) -> str:
        return self.vocab.decode(_strip_eos(tokens))


POINTNAV_ACTION_WORDS: tuple[str, ...] = ("stop", "move forward", "turn left", "turn right")


@dataclass
class DiscreteActionCodec:
    """Discrete actions written as words (Habitat PointNav by default)."""

    vocab: Vocabulary
    words: tuple[str, ...] = POINTNAV_ACTION_WORDS
    fallback_action: int = 2  # TURN_LEFT: turns in place, never collides, never ends the episode
    _dfa: TokenDFA | None = field(default=None, repr=False, compare=False)
    grammar_builds: int = field(default=0, repr=False, compare=False)

    def __post_init__(self):
        self._ids = [self.vocab.encode(w) for w in self.words]
        if len({tuple(i) for i in self._ids}) != len(self._ids):
            raise ValueError(f"action words {self.words} do not tokenize distinctly")

    def encode(self, action: int, step: int = 0) -> list[int]:
        a = int(np.asarray(action).reshape(-1)[0])
        if not 0 <= a < len(self.words):
            raise ValueError(f"discrete action {a} outside 0..{len(self.words) - 1}")
        return list(self._ids[a])

    def grammar(self, step: int = 0) -> TokenDFA:
        """The same automaton at every step: built once, kept on the device."""
        if self._dfa is None:
            self._dfa = TokenDFA.from_sequences(self._ids, TEXT_VOCAB_SIZE)
            self.grammar_builds += 1
        return self._dfa

    def grammar_length(self, step: int = 0) -> int:
        return max(len(i) for i in self._ids) + 1

    def decode_length(self) -> int:
        """The same at every step (`grammar_length`)."""
        return self.grammar_length()

    def decode(self, tokens, step: int = 0) -> Decoded:
        ids = _strip_eos(tokens)
        for a, want in enumerate(self._ids):
            if ids == want:
                return Decoded(a, True)
        return Decoded(self.fallback(), False)

    def fallback(self) -> int:
        return self.fallback_action

    def action_space_text(self) -> str:
        return ", ".join(self.words)

    def to_text(self, tokens) -> str:
        return self.vocab.decode(_strip_eos(tokens))
