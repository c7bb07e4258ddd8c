"""The wire format: typed numpy round trips, refusals of unsafe or oversized data, spaces and observations."""

import subprocess
import sys
import zlib
from pathlib import Path

import gymnasium as gym
import msgpack
import numpy as np
import pytest

from agent.server.protocol import Limits, ProtocolError, decode, encode, encode_space, encode_task
from agent.server.spaces import build_space, check_observation, declared_bytes, decode_task, task_bytes
from policies.base import TaskSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("compress", [False, True])
def test_arrays_scalars_and_nested_values_round_trip_exactly(compress):
    rng = np.random.default_rng(0)
    value = {
        "rgb": rng.integers(0, 255, (3, 128, 256), dtype=np.uint8),
        "depth": rng.random((8, 8, 1), dtype=np.float32),
        "big_endian": np.arange(4, dtype=">i4"),
        "flags": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float64),
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), 7, 2.5, "s", None, b"raw"],
        "nested": {5: {"obj_name": "ring"}},
    }
    out = decode(encode({"op": "x", "value": value}, compress=compress))["value"]
    for key in ("rgb", "depth", "flags", "empty"):
        assert out[key].dtype == value[key].dtype and np.array_equal(out[key], value[key])
    assert out["big_endian"].dtype == np.dtype("<i4") and out["big_endian"].tolist() == [0, 1, 2, 3]
    assert [type(v) for v in out["scalars"]] == [type(v) for v in value["scalars"]]
    assert out["scalars"] == value["scalars"]
    assert out["nested"] == {5: {"obj_name": "ring"}}
    assert out["rgb"].flags.writeable


def test_compression_shrinks_integer_images():
    image = {"op": "x", "rgb": np.zeros((128, 256, 3), np.uint8)}
    assert len(encode(image, compress=True)) < len(encode(image)) / 20


@pytest.mark.parametrize(
    ("ext", "message"),
    [
        (["|O", [2], "raw", b"\x00" * 16], "not allowed"),  # object arrays would unpickle: never
        (["<c8", [1], "raw", b"\x00" * 8], "not allowed"),
        (["<f4", [2, 2], "raw", b"\x00" * 4], "needs 16 bytes"),
        (["<f4", [-1], "raw", b""], "non-negative"),
        (["|u1", [1] * 9, "raw", b"\x00"], "9 dims"),
        (["|u1", [4096, 4096, 4], "raw", b""], "limit"),
        (["|u1", [4], "lz4", b"\x00" * 4], "codec"),
        (["|u1", [16], "zlib", zlib.compress(b"\x00" * 10_000)], "inflates"),  # a small bomb
        ("not a list", r"must be \[dtype"),
    ],
)
def test_unsafe_or_inconsistent_arrays_are_refused(ext, message):
    payload = msgpack.packb({"op": "act", "a": msgpack.ExtType(1, msgpack.packb(ext))})
    with pytest.raises(ProtocolError, match=message) as err:
        decode(payload, Limits(max_array_bytes=2**20))
    assert err.value.code == "bad_request"


def test_encoding_refuses_what_it_cannot_type():
    with pytest.raises(ProtocolError, match="dtype object"):
        encode({"op": "x", "a": np.array([{}], dtype=object)})
    with pytest.raises(ProtocolError, match="type function"):
        encode({"op": "x", "f": lambda: 0})
    with pytest.raises(ProtocolError, match="limit"):
        decode(encode({"op": "x", "a": np.zeros(100)}), Limits(max_message_bytes=100))
    with pytest.raises(ProtocolError, match="unknown msgpack extension"):
        decode(msgpack.packb({"op": "x", "a": msgpack.ExtType(9, b"")}))


SPACE = gym.spaces.Dict(
    {
        "rgb": gym.spaces.Dict({"front": gym.spaces.Box(0, 255, (3, 16, 32), np.uint8)}),
        "pos": gym.spaces.Box(
            np.array([0.25, -0.5], np.float32), np.array([0.75, 0.5], np.float32), (2,), np.float32
        ),
        "ee": gym.spaces.Discrete(2),
        "pair": gym.spaces.Tuple([gym.spaces.MultiBinary(3), gym.spaces.MultiDiscrete([2, 5])]),
    }
)


def test_spaces_and_tasks_round_trip():
    limits = Limits()
    rebuilt = build_space(decode(encode({"op": "x", "s": encode_space(SPACE)}))["s"], limits)
    assert rebuilt == SPACE
    assets = {"obj": {"rgb": {"front": np.ones((3, 16, 32), np.uint8)}, "placeholder_type": "object"}}
    task = TaskSpec("tabletop/x", SPACE, gym.spaces.Discrete(4), "Put {obj} down.", assets, seed=3,
                    oracle=lambda o, i: 0)  # fmt: skip
    back = decode_task(decode(encode({"op": "x", "t": encode_task(task)}))["t"], limits)
    assert (back.env_id, back.prompt, back.seed, back.oracle) == ("tabletop/x", "Put {obj} down.", 3, None)
    assert back.observation_space == SPACE and back.action_space == gym.spaces.Discrete(4)
    assert np.array_equal(back.prompt_assets["obj"]["rgb"]["front"], assets["obj"]["rgb"]["front"])


def test_declared_spaces_over_the_limits_are_refused():
    # the wire form directly: building a Gymnasium Box of this shape in the test would itself cost ~2 s
    huge = {"type": "box", "low": 0, "high": 255, "shape": [4096, 4096, 3], "dtype": "|u1"}
    with pytest.raises(ProtocolError, match="exceeds the server's array limit") as err:
        build_space(huge, Limits(max_array_bytes=2**20))
    assert err.value.code == "invalid_task"
    task = {
        "observation_space": {"type": "dict", "spaces": {"a": huge}},
        "action_space": {"type": "discrete"},
    }
    with pytest.raises(ProtocolError, match=r"declare 50331656 bytes.*limit per session is 1048576") as err:
        task_bytes(task, Limits(max_space_bytes=2**20))
    assert err.value.code == "invalid_task"
    many = {
        "type": "tuple",
        "spaces": [{"type": "dict", "spaces": {"x": {"type": "discrete", "n": 2}}}] * 257,
    }
    with pytest.raises(ProtocolError, match="more than 256 leaf spaces in all"):
        declared_bytes(many, Limits())
    with pytest.raises(ProtocolError, match="unknown space type"):
        build_space({"type": "graph"}, Limits())


def test_observations_are_checked_against_the_declared_space():
    good = {"rgb": {"front": np.zeros((3, 16, 32), np.uint8)}, "pos": np.zeros(2, np.float32), "ee": 1,
            "pair": [np.zeros(3, np.int8), np.zeros(2, np.int64)]}  # fmt: skip
    check_observation(SPACE, good)
    bad = [
        ({**good, "ee": 2}, r"obs\['ee'\]: expected an int in \[0, 2\)"),
        ({**good, "ee": True}, "expected an int"),
        ({**good, "pos": np.zeros(2, np.float64)}, r"obs\['pos'\]: expected float32 array of shape \(2,\)"),
        ({**good, "pos": np.array([np.nan, 0.5], np.float32)}, r"obs\['pos'\]: expected finite values"),
        ({**good, "rgb": {"front": np.zeros((3, 16, 33), np.uint8)}}, r"obs\['rgb'\]\['front'\]"),
        ({**good, "pair": [np.zeros(3, np.int8)]}, "a list of 2 items"),
        ([1, 2], "expected a map"),
    ]
    for value, message in bad:
        with pytest.raises(ProtocolError, match=message) as err:
            check_observation(SPACE, value)
        assert err.value.code == "invalid_observation"


def test_the_client_imports_without_jax_flax_gymnasium_or_the_model():
    code = (
        "import sys; import agent.server.client as c; c.RemotePolicy; "
        "heavy = ('jax', 'flax', 'uio2_core', 'policies', 'gymnasium', 'agent.rollout', "
        "'agent.server.server', 'envs', 'torch', 'optax', 'pybullet'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
