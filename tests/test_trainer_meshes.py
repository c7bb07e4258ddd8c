"""Tiny on 8 simulated CPU devices: every mesh shape gives one device's losses, and the optimiser
state is sharded wherever its parameter is (one subprocess runs all meshes: the device count is fixed
before jax starts, and the main pytest process has one device)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parent / "helpers" / "mesh_script.py"
MESHES = ["8,1,1", "1,8,1", "1,1,8", "2,2,2", "1,4,2", "2,4,1p"]  # p: TrainConfig.pin_rows


def _env() -> dict:
    cache = os.environ.get("UIO2_JAX_CACHE_DIR", os.path.expanduser("~/.cache/uio2-embodied/jax"))
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5"}  # fmt: skip


def test_every_mesh_gives_one_devices_losses_with_sharded_optimiser_state():
    cmd = [sys.executable, str(SCRIPT), "3", "1,1,1", *MESHES]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env(), check=True)
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [",".join(map(str, r["mesh"])) + "p" * r["pin_rows"] for r in runs] == ["1,1,1", *MESHES]
    one, *meshes = runs
    for run in meshes:
        np.testing.assert_allclose(run["losses"], one["losses"], rtol=1e-5, err_msg=str(run["mesh"]))
        assert run["replicated_moments_of_sharded_params"] == 0, run
        if run["mesh"][0] == 8:  # pure data parallelism: every device keeps whole copies
            assert run["sharded_params"] == 0 and run["opt_bytes_per_device"] == one["opt_bytes_per_device"]
        else:  # model and/or fsdp over 4-8 devices: the state shrinks with the mesh
            assert run["sharded_params"] > 50 and run["moments_of_sharded_params"] > 50
            assert run["opt_bytes_per_device"] < 0.5 * one["opt_bytes_per_device"], run
