"""UIO2's text vocabulary: a LLaMA-style SentencePiece model with UIO2's fixed id layout.

The official weights index a 33280-row embedding whose rows mean (reference section 2):

    0            <s> = BOS = PAD (decoder start token)
    1            </s> = EOS
    2            unk
    3..31999     SentencePiece pieces (the LLaMA BPE model has exactly 32000)
    32000..32999 1000 location bins, bin b = <extra_id_{200+b}> = id 32999 - b
    33000..33199 200 span sentinels <extra_id_i> = id 33199 - i
    33200..33215 <image_history_i>, <audio_history_i> interleaved, i = 1..8
    33216/33217  <image_input>, <audio_input>
    33218..33224 [Text] [S], [Text] [R], [Text] [X], [Image] [S], [Image] [R], [Audio] [S], [Audio] [R]
    33225..33279 unused padding rows

The special ids start at 32000 whatever the SentencePiece model's size, so a small model (the packaged
tiny one, for tests) gets the same layout with unused ids between its size and 32000. To load the
official weights you need the user's own LLaMA(-1/2) `tokenizer.model` (32000 pieces; it is not
redistributable): `Vocabulary.load("/path/to/tokenizer.model")`.

The original appends the special tokens to the SentencePiece proto as user-defined pieces that start
with "▁", so a special token written after a space swallows that space. `encode` reproduces that and
also recognises special tokens written without a space before them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import sentencepiece as spm

BOS_ID = 0
PAD_ID = 0
EOS_ID = 1
UNK_ID = 2

SP_MAX_PIECES = 32000
LOCATION_START = 32000
NUM_LOCATION_BINS = 1000
NUM_SENTINELS = 200
NUM_EXTRA_IDS = NUM_SENTINELS + NUM_LOCATION_BINS  # 1200 `<extra_id_i>`, stored in reverse order
EXTRA_ID_END = LOCATION_START + NUM_EXTRA_IDS - 1  # 33199 = <extra_id_0>
MAX_HISTORY_FRAMES = 8
HISTORY_START = 33200
IMAGE_INPUT_ID = 33216
AUDIO_INPUT_ID = 33217
PREFIX_START = 33218
PREFIX_TOKEN_NAMES: tuple[str, ...] = (
    "[Text] [S]",
    "[Text] [R]",
    "[Text] [X]",
    "[Image] [S]",
    "[Image] [R]",
    "[Audio] [S]",
    "[Audio] [R]",
)
NUM_REAL_TOKENS = PREFIX_START + len(PREFIX_TOKEN_NAMES)  # 33225
TEXT_VOCAB_SIZE = 33280

# Target-modality prefixes prepended to every prompt; each starts with one special token.
PREFIXES: dict[str, str] = {"text": "[Text] [S] ", "image": "[Image] [S] ", "audio": "[Audio] [S] "}

# Numbered tokens match any number (out-of-range ones are reported); prefix tokens only the real seven.
_SPECIAL_RE = re.compile(
    r"<extra_id_\d+>|<(?:image|audio)_history_\d+>|<(?:image|audio)_input>|"
    + "|".join(re.escape(n) for n in PREFIX_TOKEN_NAMES)
)


# ---- id helpers -----------------------------------------------------------------------------------


def extra_id_token(i: int) -> int:
    """Id of `<extra_id_i>` (i in 0..1199); the original appends them in reverse order."""
    if not 0 <= i < NUM_EXTRA_IDS:
        raise ValueError(f"extra id index must be in [0, {NUM_EXTRA_IDS - 1}], got {i}")
    return EXTRA_ID_END - i


def sentinel_token(i: int) -> int:
    """Id of the span-corruption sentinel `<extra_id_i>`, i in 0..199 (id 33199 - i)."""
    if not 0 <= i < NUM_SENTINELS:
        raise ValueError(f"sentinel index must be in [0, {NUM_SENTINELS - 1}], got {i}")
    return EXTRA_ID_END - i


def location_token(bin: int) -> int:
    """Id of location bin b (0..999), i.e. `<extra_id_{200+b}>` = 32999 - b."""
    if not 0 <= bin < NUM_LOCATION_BINS:
        raise ValueError(f"location bin must be in [0, {NUM_LOCATION_BINS - 1}], got {bin}")
    return LOCATION_START + NUM_LOCATION_BINS - 1 - bin


def is_location_token(token_id: int) -> bool:
    """True for the 1000 ids that encode quantised coordinates / actions."""
    return LOCATION_START <= int(token_id) < LOCATION_START + NUM_LOCATION_BINS


def location_bin(token_id: int) -> int:
    """Inverse of `location_token`."""
    if not is_location_token(token_id):
        raise ValueError(
            f"id {token_id} is not a location token (expected {LOCATION_START}.."
            f"{LOCATION_START + NUM_LOCATION_BINS - 1})"
        )
    return LOCATION_START + NUM_LOCATION_BINS - 1 - int(token_id)


def value_to_location_token(v: float | np.ndarray) -> int | np.ndarray:
    """Quantise v in [0, 1] to a location id with the original's rule b = floor(v * 999).

    Computed in float32 like the original TF code, which also makes id -> value -> id exact. Values
    outside [0, 1] are clipped; NaN is rejected since it would silently become bin 0.
    """
    arr = np.asarray(v, dtype=np.float32)
    if np.isnan(arr).any():
        raise ValueError("cannot quantise NaN to a location token")
    bins = np.floor(np.clip(arr, 0.0, 1.0) * np.float32(NUM_LOCATION_BINS - 1)).astype(np.int64)
    ids = LOCATION_START + NUM_LOCATION_BINS - 1 - np.clip(bins, 0, NUM_LOCATION_BINS - 1)
    return int(ids) if ids.ndim == 0 else ids


def location_token_to_value(token_id: int | np.ndarray) -> float | np.ndarray:
    """Value of a location id: v = 1 - (id - 32000) / 999 (= b / 999)."""
    ids = np.asarray(token_id)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"location token ids must be integers, got dtype {ids.dtype}")
    if not np.all((ids >= LOCATION_START) & (ids < LOCATION_START + NUM_LOCATION_BINS)):
        raise ValueError(
            f"not all ids are location tokens ({LOCATION_START}..{LOCATION_START + NUM_LOCATION_BINS - 1})"
        )
    vals = 1.0 - (ids.astype(np.float64) - LOCATION_START) / (NUM_LOCATION_BINS - 1)
    return float(vals) if vals.ndim == 0 else vals


def _check_frame(i: int) -> None:
    if not 1 <= i <= MAX_HISTORY_FRAMES:
        raise ValueError(f"history frame index is 1-based and must be in [1, {MAX_HISTORY_FRAMES}], got {i}")


def image_history_token(i: int) -> int:
    """Id of `<image_history_i>` (1-based frame index); image/audio entries are interleaved."""
    _check_frame(i)
    return HISTORY_START + 2 * (i - 1)


def audio_history_token(i: int) -> int:
    """Id of `<audio_history_i>` (1-based frame index)."""
    _check_frame(i)
    return HISTORY_START + 2 * (i - 1) + 1


def _build_special_tables() -> tuple[dict[str, int], dict[int, str]]:
    names: dict[str, int] = {}
    for i in range(NUM_EXTRA_IDS):
        names[f"<extra_id_{i}>"] = extra_id_token(i)
    for i in range(1, MAX_HISTORY_FRAMES + 1):
        names[f"<image_history_{i}>"] = image_history_token(i)
        names[f"<audio_history_{i}>"] = audio_history_token(i)
    names["<image_input>"] = IMAGE_INPUT_ID
    names["<audio_input>"] = AUDIO_INPUT_ID
    for k, name in enumerate(PREFIX_TOKEN_NAMES):
        names[name] = PREFIX_START + k
    return names, {v: k for k, v in names.items()}


SPECIAL_TOKEN_IDS, SPECIAL_TOKEN_NAMES = _build_special_tables()


# ---- the vocabulary -------------------------------------------------------------------------------


class Vocabulary:
    """SentencePiece model + UIO2 specials with the official id layout (see module docstring)."""

    BOS_ID = BOS_ID
    PAD_ID = PAD_ID
    EOS_ID = EOS_ID
    UNK_ID = UNK_ID
    LOCATION_START = LOCATION_START
    NUM_LOCATION_BINS = NUM_LOCATION_BINS
    TEXT_VOCAB_SIZE = TEXT_VOCAB_SIZE
    PREFIXES = PREFIXES

    def __init__(self, model_proto: bytes, name: str = "<bytes>") -> None:
        self.name = name
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        n = self._sp.get_piece_size()
        if n > SP_MAX_PIECES:
            raise ValueError(
                f"SentencePiece model {name} has {n} pieces; UIO2's layout puts its special tokens at "
                f"{LOCATION_START}, so at most {SP_MAX_PIECES} pieces fit (use the LLaMA-1/2 tokenizer.model)"
            )
        ids = (self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if ids != (0, 1, 2):
            raise ValueError(
                f"SentencePiece model {name} must follow LLaMA's convention unk=0, <s>=1, </s>=2 "
                f"(got unk, bos, eos = {ids})"
            )
        self.sp_size = n
        # Text that follows a special token is encoded without the dummy "▁" prefix (and decoded
        # without stripping a leading space), as it would be in the middle of one SentencePiece string.
        self._sp_cont = spm.SentencePieceProcessor(model_proto=_without_dummy_prefix(model_proto))

    # -- construction --
    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Load a SentencePiece `.model` file (for the official weights: LLaMA's `tokenizer.model`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SentencePiece model not found: {path}")
        return cls(path.read_bytes(), name=str(path))

    # -- sizes --
    @property
    def size(self) -> int:
        """Rows of the text embedding table (33280), independent of the SentencePiece size."""
        return TEXT_VOCAB_SIZE

    def __len__(self) -> int:
        return TEXT_VOCAB_SIZE

    # -- id mapping between SentencePiece and UIO2 (only the first three are swapped) --
    @staticmethod
    def _from_sp(i: int) -> int:
        return (UNK_ID, BOS_ID, EOS_ID)[i] if i < 3 else i

    @staticmethod
    def _to_sp(i: int) -> int:
        return (1, 2, 0)[i] if i < 3 else i

    def _sp_encode(self, text: str, continuation: bool) -> list[int]:
        sp = self._sp_cont if continuation else self._sp
        return [self._from_sp(i) for i in sp.encode(text, out_type=int)]

    # -- public API --
    def encode(self, text: str, add_eos: bool = False) -> list[int]:
        """Tokenise text, mapping special tokens written in it to their ids. No BOS is added.

        One space right before a special token belongs to the token (the original pieces are
        "▁<extra_id_i>" etc.), so "a <image_input> b" -> [▁a, <image_input>, ▁b].
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        out: list[int] = []
        pos = 0
        for m in _SPECIAL_RE.finditer(text):
            token_id = SPECIAL_TOKEN_IDS.get(m.group(0))
            if token_id is None:
                raise ValueError(f"unknown special token {m.group(0)!r} in text")
            end = m.start() - 1 if m.start() > pos and text[m.start() - 1] == " " else m.start()
            if end > pos:
                out.extend(self._sp_encode(text[pos:end], continuation=pos > 0))
            out.append(token_id)
            pos = m.end()
        if pos < len(text):
            out.extend(self._sp_encode(text[pos:], continuation=pos > 0))
        if add_eos:
            out.append(EOS_ID)
        return out

    @staticmethod
    def split_at_specials(text: str) -> list[str]:
        """`text` cut before each special token (and the one space that belongs to it): the parts'
        encodings concatenated equal `encode(text)`, so a caller can tokenise the parts that repeat
        (a prompt, past actions) once and keep their ids."""
        cuts, pos = [0], 0
        for m in _SPECIAL_RE.finditer(text):
            cut = m.start() - 1 if m.start() > pos and text[m.start() - 1] == " " else m.start()
            if cut > cuts[-1]:
                cuts.append(cut)
            pos = m.end()
        return [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)], strict=True) if b > a]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; stops at EOS, skips PAD, writes special ids as their names.

        Unused rows (between the SentencePiece size and 32000, and 33225..33279) print as
        `<unused_ID>` so random model outputs can still be shown.
        """
        parts: list[str] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                sp = self._sp_cont if parts else self._sp
                parts.append(sp.decode([self._to_sp(i) for i in run]))
                run.clear()

        for raw in ids:
            i = int(raw)
            if i == EOS_ID:
                break
            if i == PAD_ID:
                continue
            if not 0 <= i < TEXT_VOCAB_SIZE:
                raise ValueError(f"id {i} is outside the text vocabulary [0, {TEXT_VOCAB_SIZE})")
            if i < self.sp_size:
                run.append(i)
                continue
            flush()
            name = SPECIAL_TOKEN_NAMES.get(i, f"<unused_{i}>")
            parts.append(name if not parts else " " + name)
        flush()
        return "".join(parts)

    def token_name(self, token_id: int) -> str:
        """Readable name of one id: a special token's name or the SentencePiece piece."""
        i = int(token_id)
        if i in SPECIAL_TOKEN_NAMES:
            return SPECIAL_TOKEN_NAMES[i]
        if i < self.sp_size:
            return self._sp.id_to_piece(self._to_sp(i))
        if 0 <= i < TEXT_VOCAB_SIZE:
            return f"<unused_{i}>"
        raise ValueError(f"id {i} is outside the text vocabulary [0, {TEXT_VOCAB_SIZE})")

    # Module helpers as methods too, so callers holding a Vocabulary need no other import.
    location_token = staticmethod(location_token)
    location_bin = staticmethod(location_bin)
    is_location_token = staticmethod(is_location_token)
    value_to_location_token = staticmethod(value_to_location_token)
    location_token_to_value = staticmethod(location_token_to_value)
    image_history_token = staticmethod(image_history_token)
    audio_history_token = staticmethod(audio_history_token)
    sentinel_token = staticmethod(sentinel_token)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, sentencepiece pieces={self.sp_size}, size={TEXT_VOCAB_SIZE})"


def _without_dummy_prefix(model_proto: bytes) -> bytes:
    """Same model with add_dummy_prefix and remove_extra_whitespaces off (for mid-string text)."""
    from sentencepiece import sentencepiece_model_pb2 as pb  # protobuf ships with orbax/jax deps

    m = pb.ModelProto()
    m.ParseFromString(model_proto)
    m.normalizer_spec.add_dummy_prefix = False
    m.normalizer_spec.remove_extra_whitespaces = False
    return m.SerializeToString()


TINY_MODEL_RESOURCE = "assets/tiny_spm.model"


@lru_cache(maxsize=1)
def tiny_vocabulary() -> Vocabulary:
    """The packaged ~1000-piece BPE model (scripts/train_tiny_tokenizer.py), for tests and demos only."""
    data = resources.files("uio2_core").joinpath(TINY_MODEL_RESOURCE).read_bytes()
    return Vocabulary(data, name="uio2_core/" + TINY_MODEL_RESOURCE)


__all__ = [
    "AUDIO_INPUT_ID",
    "BOS_ID",
    "EOS_ID",
    "IMAGE_INPUT_ID",
    "LOCATION_START",
    "NUM_LOCATION_BINS",
    "NUM_REAL_TOKENS",
    "PAD_ID",
    "PREFIXES",
    "PREFIX_START",
    "TEXT_VOCAB_SIZE",
    "UNK_ID",
    "Vocabulary",
    "audio_history_token",
    "image_history_token",
    "is_location_token",
    "location_bin",
    "location_token",
    "location_token_to_value",
    "sentinel_token",
    "tiny_vocabulary",
    "value_to_location_token",
]
