"""`uio2 plan`: XLA's per-device memory for the real training step on a simulated mesh."""

import json

import jax
import numpy as np

from agent.cli import main


def test_plan_tiny_on_eight_simulated_devices(capfd, tiny_cfg):
    from flax import nnx

    from uio2_core.model import abstract_model

    argv = ["plan", "--model", "tiny", "--mesh", "1,4,2", "--batch-size", "8", "--text-len", "16",
            "--target-len", "8", "--remat", "layer", "--device-memory", "1GB", "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capfd.readouterr().out)
    per = out["per_device_bytes"]
    params = nnx.to_pure_dict(nnx.split(abstract_model(tiny_cfg, with_vqgan=False), nnx.Param, ...)[1])
    total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(params))
    assert out["devices"] == 8 and out["remat"] == "layer" and out["fits"] is True
    assert per["parameters"] < 0.3 * total  # fsdp 4 x model 2: most weights split 8 ways
    # tiny's dims are under Adafactor's 128 (no factoring): second moment + momentum of the trained weights
    assert 0 < per["optimizer_state"] < 2.0 * per["parameters"]
    # XLA's arguments are parameters + optimiser state + batch (to a few bytes: it drops unused scalars)
    assert per["arguments"] >= 0.99 * (per["parameters"] + per["optimizer_state"])
    assert per["temporaries"] > 0 and per["peak"] >= per["arguments"] + per["temporaries"]


def test_plan_rejects_a_bad_mesh_and_memory_with_a_clear_error(capfd):
    assert main(["plan", "--model", "tiny", "--mesh", "1,3", "--batch-size", "8"]) == 2
    assert "--mesh takes three positive sizes" in capfd.readouterr().err
    bad_memory = ["--mesh", "1,1,1", "--batch-size", "8", "--device-memory", "80XB"]
    assert main(["plan", "--model", "tiny", *bad_memory]) == 2
    assert "--device-memory takes a size like 80GB" in capfd.readouterr().err


def test_extend_linearly_goes_through_both_depths_and_extends_their_slope():
    from training.plan import extend_linearly

    at = {
        3: {"arguments": 1126271000, "temporaries": 1173506144},
        2: {"arguments": 861464600, "temporaries": 899659632},
    }
    assert extend_linearly(at, 2) == at[2] and extend_linearly(at, 3) == at[3]
    est = extend_linearly(at, 24)  # xxl's 24 layers from its 2- and 3-layer compiles on 1,8,1
    assert est["arguments"] == at[3]["arguments"] + 21 * (at[3]["arguments"] - at[2]["arguments"])
    assert est["temporaries"] == at[3]["temporaries"] + 21 * (at[3]["temporaries"] - at[2]["temporaries"])


def test_pinning_rows_keeps_activations_split_over_fsdp(capfd):
    """Left to itself, XLA's partitioner keeps tiny's layer activations whole (every row of the batch) on
    every device of an fsdp mesh; with --pin-rows they stay split by rows, and the temporaries shrink."""
    argv = ["plan", "--model", "tiny", "--mesh", "1,8,1", "--batch-size", "8", "--text-len", "64",
            "--target-len", "32", "--remat", "layer", "--json"]  # fmt: skip
    temporaries = {}
    for pin in (False, True):
        assert main(argv + ["--pin-rows"] * pin) == 0
        out = json.loads(capfd.readouterr().out)
        assert out["rows_pinned"] is pin
        temporaries[pin] = out["per_device_bytes"]["temporaries"]
    assert temporaries[True] < 0.5 * temporaries[False], temporaries
