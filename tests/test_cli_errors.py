"""Bad input to the `uio2` command line: each kind gives a non-zero exit, one line on stderr that names
the problem, and no traceback. Driven in-process through `agent.cli.main` (a subprocess would pay the
jax import for each); every case fails before any model is built or any env is stepped for long.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from agent.cli import main

RUN = "{run}"  # a saved tiny model (model.json says text_len=96, max_frames=4)
DAMAGED = "{damaged}"  # the same with a truncated params file
OFFICIAL = "{official}"  # a directory laid out as an official HF checkpoint (config.json + weights)
EVAL = ["eval", "--env", "pointnav", "--episodes", "1", "--out", "{out}"]
# a valid `uio2 train` call (the recorded data in {out}); a case adds the one wrong flag
TRAIN = ["train", "--data", "{out}", "--steps", "1", "--out", "{out}/run"]

# (kind of mistake, argv, a word the one-line message must contain)
# fmt: off
CASES = [
    # argparse level: commands and plain flags
    ("no command", [], "command"),
    ("unknown command", ["fly"], "fly"),
    ("eval without --env", ["eval", "--policy", "random", "--episodes", "1", "--out", "{out}"], "--env"),
    ("eval without --out", ["eval", "--env", "pointnav", "--policy", "random", "--episodes", "1"], "--out"),
    ("--episodes not a number", [*EVAL, "--policy", "random", "--episodes", "two"], "--episodes"),
    ("--level not a level", [*EVAL, "--policy", "random", "--level", "L9"], "--level"),
    ("info without --model", ["info"], "--model"),
    ("convert without DST", ["convert", "{out}"], "dst"),
    ("convert --to unknown", ["convert", "{out}", "{out}/x", "--to", "onnx"], "--to"),
    ("demo without --out", ["demo"], "--out"),
    ("showcase unknown flag", ["showcase", "--out", "{out}", "--fast"], "--fast"),
    ("rollout --video-format", ["rollout", "--env", "pointnav", "--policy", "random", "--out", "{out}",
                                "--video-format", ".avi"], "--video-format"),
    ("serve an oracle", ["serve", "--policy", "oracle"], "--policy"),
    # typed --env.* / --policy.* options
    ("--env.width not an int", [*EVAL, "--policy", "random", "--env.width=abc"], "--env.width"),
    ("unknown env option", [*EVAL, "--policy", "random", "--env.bogus=1"], "--env.bogus"),
    ("unknown policy option", [*EVAL, "--policy", "uio2", "--policy.nosuch=1"], "--policy.nosuch"),
    ("policy option for a baseline", [*EVAL, "--policy", "random", "--policy.text_len=96"],
     "--policy.text_len"),
    ("--policy.text_len too small", [*EVAL, "--policy", "uio2", "--policy.text_len=1"], "--policy.text_len"),
    ("--policy.view not a camera", [*EVAL, "--policy", "uio2", "--policy.view=side"], "--policy.view"),
    ("--env.pointgoal not a bool", ["eval", "--env", "pointnav-audio", "--policy", "random", "--episodes",
                                    "1", "--out", "{out}", "--env.pointgoal=maybe"], "--env.pointgoal"),
    ("option without a value", [*EVAL, "--policy", "random", "--env.width"], "--env.width"),
    ("unknown option group", [*EVAL, "--policy", "random", "--robot.speed=1"], "--robot.speed"),
    ("env rejects a value", [*EVAL, "--policy", "random", "--env.width=0"], "width"),
    ("--policy.tokenizer missing file", [*EVAL, "--policy", "uio2", "--policy.tokenizer=/no/such.model"],
     "--policy.tokenizer"),
    # run settings
    ("--episodes 0", [*EVAL, "--policy", "random", "--episodes", "0"], "--episodes"),
    ("--num-envs 0", [*EVAL, "--policy", "random", "--num-envs", "0"], "--num-envs"),
    ("--max-steps 0", [*EVAL, "--policy", "random", "--max-steps", "0"], "--max-steps"),
    ("a level and --level", ["eval", "--env", "tabletop/L3", "--level", "L2", "--policy", "random",
                             "--episodes", "1", "--out", "{out}"], "--level"),
    ("--level on pointnav", [*EVAL, "--policy", "random", "--level", "L1"], "--level"),
    ("unknown tabletop task", ["eval", "--env", "tabletop/juggle", "--policy", "random", "--episodes", "1",
                               "--out", "{out}"], "juggle"),
    ("unknown env", ["eval", "--env", "mars", "--policy", "random", "--episodes", "1", "--out", "{out}"],
     "mars"),
    ("unknown policy", [*EVAL, "--policy", "genius"], "genius"),
    ("--model with a remote policy", [*EVAL, "--policy", "remote://127.0.0.1:1", "--model", "large"],
     "--model"),
    # models and checkpoints
    ("--model path that does not exist", [*EVAL, "--policy", "uio2", "--model", "/no/such/run"],
     "/no/such/run"),
    ("--model RUN with damaged params", [*EVAL, "--policy", "uio2", "--model", DAMAGED],
     DAMAGED + "/params is damaged"),
    ("flag contradicts the trained run", [*EVAL, "--policy", "uio2", "--model", RUN, "--policy.text_len=64"],
     "text_len"),
    ("official weights without tokenizer", [*EVAL, "--policy", "uio2", "--model", OFFICIAL],
     "--policy.tokenizer"),
    ("info on a damaged model.json", ["info", "--model", "{broken_meta}"], "model.json"),
    # training
    ("train --steps -1", ["train", "--data", "{out}", "--steps", "-1", "--out", "{out}/run"], "--steps"),
    ("train --data missing", ["train", "--data", "/no/such/data", "--steps", "1", "--out", "{out}/run"],
     "--data"),
    ("train --mesh of two", [*TRAIN, "--mesh", "1,2"], "--mesh"),
    ("train --denoise unknown kind", [*TRAIN, "--denoise", "video:0.2"], "--denoise"),
    ("train --dtype float16", [*TRAIN, "--dtype", "float16"], "--dtype"),
    ("train --pack of one", [*TRAIN, "--pack", "320"], "--pack"),
    ("train --pack odd batch", [*TRAIN, "--pack", "320,24", "--batch-size", "3"], "--batch-size"),
    ("train --max-minutes 0", [*TRAIN, "--max-minutes", "0"], "--max-minutes"),
    ("train --logit-share 0", [*TRAIN, "--logit-share", "0"], "--logit-share"),
    ("train --grounding-share 1", [*TRAIN, "--grounding-share", "1"], "--grounding-share"),
    ("train --data-weights not numbers", [*TRAIN, "--data-weights", "a,b"], "--data-weights"),
    ("train --data-weights two for one", [*TRAIN, "--data-weights", "1,2"], "--data-weights"),
]
if importlib.util.find_spec("habitat") is None:  # the install hint only shows where habitat is missing
    CASES.append(("habitat env without habitat",
                  [*EVAL[:2], "habitat/x.yaml", *EVAL[3:], "--policy", "random"],
                  "aihabitat-nightly"))
# fmt: on


def test_the_list_covers_the_issue():
    assert len(CASES) >= 38
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_model) -> dict[str, str]:
    from uio2_core.checkpoints.official_config import official_dict
    from uio2_core.checkpoints.ours import save_params

    root = tmp_path_factory.mktemp("cli_errors")
    run = root / "run"
    save_params(tiny_model, run, {"text_len": 96, "max_frames": 4})
    damaged = root / "damaged"
    shutil.copytree(run, damaged)
    biggest = max((f for f in (damaged / "params").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    official = root / "official"
    official.mkdir()
    (official / "config.json").write_text(json.dumps(official_dict(tiny_model.cfg)))
    (official / "pytorch_model.bin").write_bytes(b"")  # never read: the tokenizer is checked first
    broken = root / "broken_meta"
    shutil.copytree(run, broken)
    (broken / "model.json").write_text('{"config": "tiny", ')
    out = root / "out"
    out.mkdir()
    return {"run": str(run), "damaged": str(damaged), "official": str(official), "broken_meta": str(broken),
            "out": str(out)}  # fmt: skip


@pytest.mark.parametrize("kind, argv, word", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_no_traceback(kind, argv, word, paths, capsys):
    rc = main([a.format(**paths) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0, f"{kind}: accepted"
    assert "Traceback" not in err
    assert len(lines) == 1, f"{kind}: {err!r}"
    assert word.format(**paths).lower() in lines[0].lower(), f"{kind}: {lines[0]!r}"


def test_eval_help_lists_the_env_and_policy_options(capsys):
    assert main(["eval", "--env", "tabletop/rotate", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--episodes", "--env.mode", "--env.bonus_steps", "--policy.text_len", "--policy.tokenizer"):
        assert flag in out
    assert main(["train", "--eval-env", "pointnav", "--help"]) == 0  # train: env options, no policy ones
    out = capsys.readouterr().out
    assert "--env.width" in out and "--steps" in out and "--policy." not in out


def test_today_spellings_parse_to_typed_values():
    from agent.options import parse_options

    env, policy = parse_options(
        ["--env.width=64", "--env.height", "32", "--env.pointgoal=false", "--env.episodes=null",
         "--policy.max_frames", "4"], "pointnav-audio", "uio2", "uio2 eval",
    )  # fmt: skip
    assert env == {"width": 64, "height": 32, "pointgoal": False, "episodes": None}
    assert policy == {"max_frames": 4}
    assert isinstance(env["width"], int)


def test_run_dir_options_are_restored_and_info_reads_them(paths, capsys):
    from policies.registry import UIO2Options, resolve_options

    kwargs = UIO2Options(**resolve_options(paths["run"], {"max_frames": 4})).policy_kwargs()
    assert (kwargs["text_len"], kwargs["max_frames"]) == (96, 4)  # what make_policy gives UIO2Policy
    assert main(["info", "--model", paths["run"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ours" and info["trained_with"] == {"text_len": 96, "max_frames": 4}
    from agent.model_info import _checkpoint_config  # the same path for an official copy, minus the counts

    cfg, fmt, saved = _checkpoint_config(Path(paths["official"]))
    assert (fmt, saved, cfg.transformer.d_model) == ("hf", {}, info["config"]["d_model"])


def test_rollouts_during_training_see_the_inputs_the_run_trains_on(tiny_model):
    """`uio2 train --eval-env` rolls out the model it trains: with the run's camera and prompt crop, and with
    every option the run records (RUN_OPTIONS) that `uio2 train` takes as a flag."""
    from agent.cli import _trained_input_options, build_parser
    from policies.registry import RUN_OPTIONS
    from policies.uio2_policy import UIO2Policy
    from uio2_core.vocab import tiny_vocabulary

    argv = ["--data", "d", "--out", "o", "--steps", "1", "--view", "top", "--prompt-crop"]
    args, _ = build_parser().subcommands["train"].parse_known_args(argv)
    options = _trained_input_options(args)
    assert set(options) >= {k for k in RUN_OPTIONS if hasattr(args, k)}
    policy = UIO2Policy(tiny_model, tiny_vocabulary(), **options)
    assert (policy.view, policy.prompt_crop) == ("top", True)
