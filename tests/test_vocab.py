"""UIO2 text vocabulary: the id table of reference section 2, encode/decode, location values."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from uio2_core import vocab as V
from uio2_core.vocab import Vocabulary, tiny_vocabulary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def voc() -> Vocabulary:
    return tiny_vocabulary()


def _proto(voc: Vocabulary):
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString((ROOT / "uio2_core" / "assets" / "tiny_spm.model").read_bytes())
    return m


# ---- the id table ---------------------------------------------------------------------------------


def test_core_ids_and_sizes(voc: Vocabulary) -> None:
    assert (V.BOS_ID, V.PAD_ID, V.EOS_ID, V.UNK_ID) == (0, 0, 1, 2)
    assert (Vocabulary.BOS_ID, Vocabulary.EOS_ID, Vocabulary.UNK_ID) == (0, 1, 2)
    assert V.TEXT_VOCAB_SIZE == len(voc) == voc.size == 33280
    assert V.NUM_REAL_TOKENS == 33225
    # LLaMA's unk/<s>/</s> (0/1/2 in SentencePiece) are remapped to 2/0/1.
    assert voc.token_name(0) == "<s>"
    assert voc.token_name(1) == "</s>"
    assert voc.token_name(2) == "<unk>"


def test_special_ids_fill_the_extra_range_exactly() -> None:
    ids = sorted(V.SPECIAL_TOKEN_IDS.values())
    assert ids == list(range(32000, 33225))
    assert len(V.SPECIAL_TOKEN_IDS) == 33225 - 32000


def test_location_bins_both_ends(voc: Vocabulary) -> None:
    assert V.LOCATION_START == 32000 and V.NUM_LOCATION_BINS == 1000
    assert V.location_token(0) == 32999
    assert V.location_token(999) == 32000
    assert voc.token_name(32999) == "<extra_id_200>"
    assert voc.token_name(32000) == "<extra_id_1199>"
    assert voc.encode("<extra_id_200>") == [32999]
    assert voc.encode("<extra_id_1199>") == [32000]
    for b in (0, 1, 500, 998, 999):
        assert V.location_bin(V.location_token(b)) == b
        assert V.SPECIAL_TOKEN_IDS[f"<extra_id_{200 + b}>"] == V.location_token(b)
    assert V.is_location_token(32000) and V.is_location_token(32999)
    assert not V.is_location_token(31999) and not V.is_location_token(33000)


def test_sentinels(voc: Vocabulary) -> None:
    assert V.sentinel_token(0) == 33199
    assert V.sentinel_token(199) == 33000
    assert voc.encode("<extra_id_0>") == [33199]
    assert voc.encode("<extra_id_199>") == [33000]
    assert not V.is_location_token(V.sentinel_token(199))


def test_history_and_input_tokens(voc: Vocabulary) -> None:
    img = [V.image_history_token(i) for i in range(1, 9)]
    aud = [V.audio_history_token(i) for i in range(1, 9)]
    assert img[0] == 33200 and aud[0] == 33201 and aud[-1] == 33215
    interleaved = [t for pair in zip(img, aud, strict=True) for t in pair]
    assert interleaved == list(range(33200, 33216))
    for i in range(1, 9):
        assert voc.encode(f"<image_history_{i}>") == [V.image_history_token(i)]
        assert voc.encode(f"<audio_history_{i}>") == [V.audio_history_token(i)]
    assert voc.encode("<image_input>") == [33216]
    assert voc.encode("<audio_input>") == [33217]


def test_prefix_tokens(voc: Vocabulary) -> None:
    names = ["[Text] [S]", "[Text] [R]", "[Text] [X]", "[Image] [S]", "[Image] [R]"]
    names += ["[Audio] [S]", "[Audio] [R]"]
    assert [voc.encode(n) for n in names] == [[i] for i in range(33218, 33225)]
    # Each prompt prefix is one token; its trailing space becomes the next word's "▁", as in one string.
    for key, tok in (("text", 33218), ("image", 33221), ("audio", 33223)):
        assert voc.encode(V.PREFIXES[key] + "what is this") == [tok, *voc.encode("what is this")]
    # Not a real prefix token: stays plain text.
    assert all(i < voc.sp_size for i in voc.encode("[Image] [X]"))


# ---- encode / decode ------------------------------------------------------------------------------


ROUND_TRIP = [
    "Rotate the red block by 90 degrees.",
    "[Text] [S] pick from ( <extra_id_300> <extra_id_400> <extra_id_250> ) and place to "
    "( <extra_id_1199> <extra_id_200> <extra_id_700> )",
    "[Image] [S] <image_history_1> then <image_history_2> and <audio_history_8> <image_input> <audio_input>",
    "fill <extra_id_0> in <extra_id_199> now",
    "[Audio] [R] two  spaces and\ttab",
    "bytes: é ü 日本 ✓",
    "<extra_id_5> starts and ends <extra_id_6>",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(voc: Vocabulary, text: str) -> None:
    ids = voc.encode(text)
    assert all(0 <= i < V.NUM_REAL_TOKENS for i in ids)
    assert V.EOS_ID not in ids and V.PAD_ID not in ids
    assert voc.decode(ids) == text
    # Every special token written in the text appears as its own id, in order.
    specials = [i for i in ids if i >= V.LOCATION_START]
    assert specials == [V.SPECIAL_TOKEN_IDS[m.group(0)] for m in V._SPECIAL_RE.finditer(text)]


def test_special_token_absorbs_one_preceding_space(voc: Vocabulary) -> None:
    assert voc.encode("pick <image_input>") == [*voc.encode("pick"), 33216]
    # Text after a special token is encoded as mid-string text: " pick" == dummy-prefixed "pick".
    assert voc.encode("<image_input> pick") == [33216, *voc.encode("pick")]
    # Without a space the following word is not a word start ("▁pick" vs "pick").
    glued = voc.encode("<image_input>pick")
    assert glued[0] == 33216 and glued[1:] != voc.encode("pick")
    assert not voc.token_name(glued[1]).startswith("\u2581")


def test_plain_text_matches_sentencepiece(voc: Vocabulary) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(ROOT / "uio2_core" / "assets" / "tiny_spm.model"))
    text = "Move forward 3 steps, then turn left and stop."
    assert voc.encode(text) == sp.encode(text)  # base pieces keep their SentencePiece ids (>= 3)


def test_add_eos_and_decode_stops_at_eos_skips_pad(voc: Vocabulary) -> None:
    ids = voc.encode("push the blue cube", add_eos=True)
    assert ids[-1] == V.EOS_ID and V.EOS_ID not in ids[:-1]
    assert voc.decode([V.PAD_ID, *ids, *voc.encode("garbage after eos")]) == "push the blue cube"
    assert voc.decode(np.array([0, 0, *ids[:-1], 0, 0])) == "push the blue cube"


def test_unknown_and_bad_ids(voc: Vocabulary) -> None:
    for bad in ("<extra_id_1200>", "<image_history_0>", "<image_history_9>", "<audio_history_12>"):
        with pytest.raises(ValueError, match="unknown special token"):
            voc.encode(f"go {bad}")
    with pytest.raises(ValueError, match="outside the text vocabulary"):
        voc.decode([5, 33280])
    with pytest.raises(ValueError, match="outside the text vocabulary"):
        voc.decode([-1])
    with pytest.raises(TypeError):
        voc.encode(b"bytes")  # type: ignore[arg-type]
    # Rows that exist in the embedding but mean nothing print visibly instead of failing.
    assert voc.decode([voc.sp_size]) == f"<unused_{voc.sp_size}>"
    assert voc.decode([33279]) == "<unused_33279>"


# ---- values <-> location tokens -------------------------------------------------------------------


def test_value_token_999_rule() -> None:
    assert V.value_to_location_token(0.0) == 32999
    assert V.value_to_location_token(1.0) == 32000
    assert V.value_to_location_token(0.5) == 32999 - 499  # floor(499.5)
    assert V.value_to_location_token(0.9995) == 32999 - 998  # floor, not round
    assert V.value_to_location_token(-0.3) == 32999  # clipped
    assert V.value_to_location_token(1.7) == 32000
    assert V.location_token_to_value(32000) == 1.0
    assert V.location_token_to_value(32999) == 0.0
    assert V.location_token_to_value(32999 - 333) == pytest.approx(333 / 999)


def test_value_token_round_trip_all_bins() -> None:
    ids = np.arange(32000, 33000)
    vals = V.location_token_to_value(ids)
    np.testing.assert_array_equal(V.value_to_location_token(vals), ids)
    rng = np.random.default_rng(0)
    v = rng.random(1000)
    back = V.location_token_to_value(V.value_to_location_token(v))
    assert np.all(back <= v + 1e-6) and np.all(v - back < 1 / 999 + 1e-6)


def test_location_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        V.value_to_location_token(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        V.value_to_location_token(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="location bin"):
        V.location_token(1000)
    with pytest.raises(ValueError, match="not a location token"):
        V.location_bin(33000)
    with pytest.raises(ValueError, match="location tokens"):
        V.location_token_to_value(33100)
    with pytest.raises(ValueError, match="1-based"):
        V.image_history_token(0)
    with pytest.raises(ValueError, match="1-based"):
        V.audio_history_token(9)
    with pytest.raises(ValueError, match="sentinel"):
        V.sentinel_token(200)


# ---- loading --------------------------------------------------------------------------------------


def test_tiny_model_properties(voc: Vocabulary) -> None:
    path = ROOT / "uio2_core" / "assets" / "tiny_spm.model"
    assert path.stat().st_size < 300_000
    assert 1000 <= voc.sp_size <= 2000
    assert voc.token_name(3) == "<0x00>"  # byte fallback pieces right after the specials, like LLaMA
    assert Vocabulary.load(path).encode("stop") == voc.encode("stop")
    with pytest.raises(FileNotFoundError):
        Vocabulary.load(ROOT / "no_such.model")


def test_rejects_models_that_do_not_fit(voc: Vocabulary) -> None:
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = _proto(voc)
    for i in range(32000 - len(m.pieces)):
        m.pieces.add(piece=f"qz{i}", score=0.0, type=pb.ModelProto.SentencePiece.USER_DEFINED)
    full = Vocabulary(m.SerializeToString())  # exactly 32000 pieces: fits, last piece is id 31999
    assert full.sp_size == 32000 and full.token_name(31999) == f"qz{32000 - voc.sp_size - 1}"
    m.pieces.add(piece="one_too_many", score=0.0, type=pb.ModelProto.SentencePiece.USER_DEFINED)
    with pytest.raises(ValueError, match="at most 32000"):
        Vocabulary(m.SerializeToString())

    m = _proto(voc)
    m.pieces[0].piece, m.pieces[1].piece = m.pieces[1].piece, m.pieces[0].piece
    m.pieces[0].type, m.pieces[1].type = m.pieces[1].type, m.pieces[0].type
    with pytest.raises(ValueError, match="unk=0"):
        Vocabulary(m.SerializeToString())


def test_training_script_is_deterministic_and_reproduces_asset() -> None:
    spec = importlib.util.spec_from_file_location(
        "train_tiny_tokenizer", ROOT / "scripts" / "train_tiny_tokenizer.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.make_corpus(50, seed=1) == mod.make_corpus(50, seed=1)
    assert mod.make_corpus(50, seed=1) != mod.make_corpus(50, seed=2)
    model = mod.train(vocab_size=1000, seed=0, num_sentences=20000)
    assert model == (ROOT / "uio2_core" / "assets" / "tiny_spm.model").read_bytes()


def test_unknown_pieces_map_to_uio2_unk() -> None:
    """A model without byte fallback emits SentencePiece's unk (0), which must become UIO2's UNK=2."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(
            ["pick the red block", "place it on the blue plate", "turn left and stop"] * 20
        ),
        model_writer=buf,
        model_type="bpe",
        vocab_size=40,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    voc = Vocabulary(buf.getvalue())
    ids = voc.encode("red 日 block")
    assert V.UNK_ID in ids and V.BOS_ID not in ids and V.EOS_ID not in ids
    text = voc.decode(ids)  # SentencePiece writes unk as " \u2047 "
    assert text.startswith("red") and text.endswith("block") and "\u2047" in text
