"""Train the tiny SentencePiece model packaged as `uio2_core/assets/tiny_spm.model`.

The official tokenizer (LLaMA's `tokenizer.model`) cannot be redistributed, yet tests and demos need a
real SentencePiece model with the same conventions. This script writes its own small English corpus of
robot / embodied instructions (fixed seed, no downloads) and trains a byte-fallback BPE model the way
LLaMA's was trained (unk=0, <s>=1, </s>=2, identity normaliser, dummy prefix, split digits), so the
id layout in `uio2_core.vocab` works unchanged. Re-running it gives the same bytes.

    .venv/bin/python scripts/train_tiny_tokenizer.py [--vocab-size 1000] [--output PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import sys
from pathlib import Path

import sentencepiece as spm

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "uio2_core" / "assets" / "tiny_spm.model"

COLOURS = "red|green|blue|yellow|purple|orange|pink|cyan|white|black|grey|brown|gold|silver|olive|magenta"
TEXTURES = (
    "wooden|metal|plastic|glass|rubber|striped|polka dot|checkered|marble|granite|tiger|leopard|rainbow|"
    "dark|light|shiny|matte|rough|smooth"
)
OBJECTS = (
    "block|bowl|cup|mug|plate|pan|box|container|frame|ring|heart|letter|triangle|square|circle|star|cross|"
    "diamond|hexagon|pentagon|bottle|can|apple|banana|sponge|towel|drawer|door|cabinet|lid|spoon|fork|"
    "knife|ball|cube|cylinder|shoe|book|pen|tray|basket"
)
LOCATIONS = (
    "table|shelf|counter|floor|sink|stove|desk|bin|corner|center|kitchen|bedroom|bathroom|living room|"
    "hallway|office|garage"
)
RELATIONS = (
    "on top of|inside|next to|to the left of|to the right of|in front of|behind|above|below|near|far from|"
    "between"
)
VERBS = (
    "pick up|place|push|pull|rotate|stack|open|close|grasp|lift|drop|slide|sweep|move|put|turn|wipe|pour|"
    "flip|insert"
)
NAV = (
    "move forward|move backward|turn left|turn right|stop|go straight|go to the|look up|look down|"
    "navigate to|explore the"
)
ADVERBS = "slowly|carefully|quickly|gently|then|again|first|finally|now"
NUMBERS = "one|two|three|four|five|six|seven|eight|nine|ten|first|second|third|fourth|last"
COLOURS, TEXTURES, OBJECTS, LOCATIONS, RELATIONS, VERBS, NAV, ADVERBS, NUMBERS = (
    words.split("|")
    for words in (COLOURS, TEXTURES, OBJECTS, LOCATIONS, RELATIONS, VERBS, NAV, ADVERBS, NUMBERS)
)


def _obj(rng: random.Random) -> str:
    parts = []
    if rng.random() < 0.6:
        parts.append(rng.choice(COLOURS))
    if rng.random() < 0.4:
        parts.append(rng.choice(TEXTURES))
    parts.append(rng.choice(OBJECTS))
    return " ".join(parts)


def _num(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return str(rng.randint(0, 999))
    return f"{rng.uniform(-2.0, 2.0):.2f}"


def _sentence(rng: random.Random) -> str:
    """One instruction / dialogue line from a handful of templates."""
    k = rng.randrange(14)
    if k == 0:
        return f"{rng.choice(VERBS).capitalize()} the {_obj(rng)} {rng.choice(RELATIONS)} the {_obj(rng)}."
    if k == 1:
        return f"Put the {_obj(rng)} into the {_obj(rng)} on the {rng.choice(LOCATIONS)}."
    if k == 2:
        steps = " and then ".join(rng.choice(NAV) for _ in range(rng.randint(1, 3)))
        return f"{steps.capitalize()} {rng.choice(ADVERBS)}."
    if k == 3:
        a, b = rng.sample(["pick", "push"], 2) if rng.random() < 0.3 else ("pick", "place")
        b = "push" if a == "push" else b
        return (
            f"{rng.randint(1, 8)}: {a} from ( {_num(rng)} {_num(rng)} {_num(rng)} ) and {b} to ( "
            f"{_num(rng)} {_num(rng)} {_num(rng)} )"
        )
    if k == 4:
        return (
            f"Predict a sequence of actions to achieve the goal based on the agent's initial "
            f"observation: {rng.choice(VERBS)} the {_obj(rng)} {rng.choice(RELATIONS)} the {_obj(rng)}."
        )
    if k == 5:
        direction = rng.choice(["clockwise", "counterclockwise"])
        return f"Rotate the {_obj(rng)} by {rng.randint(0, 360)} degrees {direction}."
    if k == 6:
        direction = rng.choice(["up", "down", "left", "right", "forward", "back"])
        return f"Move the gripper {direction} by {_num(rng)} cm."
    if k == 7:
        return (
            f"Action space: move forward, turn left, turn right, stop. Instruction: go to the "
            f"{rng.choice(LOCATIONS)}. Predict the following action."
        )
    if k == 8:
        return f"What is the {rng.choice(['colour', 'texture', 'shape', 'position'])} of the {_obj(rng)}?"
    if k == 9:
        return f"The {_obj(rng)} is {rng.choice(RELATIONS)} the {_obj(rng)}."
    if k == 10:
        which = rng.choice(NUMBERS)
        return f"Rearrange the objects to match this scene and then restore them to the {which} setup."
    if k == 11:
        return (
            f"Sweep {rng.choice(NUMBERS)} {_obj(rng)}s into the {_obj(rng)} without touching the {_obj(rng)}."
        )
    if k == 12:
        return f"Observation ( {_num(rng)} {_num(rng)} {_num(rng)} ) action {rng.choice(NAV)}"
    order = ", ".join(rng.choice(COLOURS) for _ in range(3))
    return f"Stack the {_obj(rng)}s in order: {order}. Stop when done."


def make_corpus(num_sentences: int, seed: int) -> list[str]:
    """Deterministic synthetic corpus; a few symbols so byte fallback is exercised but not needed often."""
    rng = random.Random(seed)
    lines = [_sentence(rng) for _ in range(num_sentences)]
    lines += ["Yes.", "No.", "Done!", "Task complete; robot idle.", "Error: object not found (retry #2)."]
    return lines


def train(vocab_size: int, seed: int, num_sentences: int) -> bytes:
    """Train and return the serialized model (BPE, LLaMA's trainer settings where they apply)."""
    corpus = make_corpus(num_sentences, seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        seed_sentencepiece_size=1_000_000,
        minloglevel=2,
    )
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-sentences", type=int, default=20000)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    model = train(args.vocab_size, args.seed, args.num_sentences)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    print(
        f"wrote {args.output} ({len(model)} bytes, {sp.get_piece_size()} pieces, "
        f"sha256 {hashlib.sha256(model).hexdigest()[:16]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
