"""Trajectory recorder and reader: round trips for both env families, appending, validation, layout."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from agent.recording import TrajectoryRecorder
from envs.tabletop.spaces import action_space as vima_action_space
from envs.tabletop.spaces import observation_space as vima_observation_space
from training.dataset import NotADatasetError, open_dataset
from training.features import (
    VIMA_ACTION_NAMES,
    action_from_row,
    action_to_row,
    extra_from_info,
    features_for,
    frame_from,
)

FPS = 10


# -- episode builders -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pointnav_episodes():
    """Three short real PointNav episodes at 32x32: (task, frames, actions, final info) each."""
    from envs.pointnav.env import PointNavEnv

    env = PointNavEnv(width=32, height=32, max_episode_steps=12)
    rng = np.random.default_rng(0)
    episodes = []
    for k in range(3):
        obs, info = env.reset(seed=k)
        frames, actions = [], []
        done = False
        while not done:
            action = int(rng.integers(1, 4)) if len(frames) < 11 or k != 1 else 0
            nxt, reward, terminated, truncated, info = env.step(action)
            frames.append(frame_from(obs, action, reward, terminated, truncated, info["success"]))
            actions.append(action)
            obs, done = nxt, terminated or truncated
        episodes.append((f"navigate {k % 2}", frames, actions, info))
    features = features_for(env.observation_space, env.action_space)
    env.close()
    return features, episodes


def vima_obs(rng: np.random.Generator) -> dict:
    rgb = {v: rng.integers(0, 256, (3, 128, 256), dtype=np.uint8) for v in ("front", "top")}
    segm = {v: rng.integers(0, 8, (128, 256), dtype=np.uint8) for v in ("front", "top")}
    return {"rgb": rgb, "segm": segm, "ee": int(rng.integers(0, 2))}


def vima_action(rng: np.random.Generator) -> dict:
    quat = rng.normal(size=4)
    return {
        "pose0_position": rng.uniform(0.25, 0.75, 2).astype(np.float32),
        "pose0_rotation": (quat / np.linalg.norm(quat)).astype(np.float32),
        "pose1_position": rng.uniform(-0.5, 0.5, 2).astype(np.float32),
        "pose1_rotation": np.array([0, 0, 0, 1], np.float32),
    }


def vima_episode(seed: int, length: int) -> tuple[str, list[dict], list[dict], dict]:
    rng = np.random.default_rng(seed)
    prompt = f"put the {{dragged_obj}} into the {{base_obj}} (episode {seed})"
    assets = {
        name: {
            "rgb": {v: rng.integers(0, 256, (3, 128, 256), dtype=np.uint8) for v in ("front", "top")},
            "segm": {
                **{v: rng.integers(0, 4, (128, 256), dtype=np.uint8) for v in ("front", "top")},
                "obj_info": {"obj_id": 0, "obj_name": name, "obj_color": "red"},
            },
            "placeholder_type": "object",
        }
        for name in ("dragged_obj", "base_obj")
    }
    frames, actions = [], []
    for t in range(length):
        action = vima_action(rng)
        last = t == length - 1
        frames.append(frame_from(vima_obs(rng), action, float(last), last, False, last, task=prompt))
        actions.append(action)
    extra = {"seed": seed, "env_id": "uio2/tabletop-visual_manipulation-v0", "prompt_assets": assets}
    return prompt, frames, actions, extra


def stack(frames: list[dict], key: str) -> np.ndarray:
    return np.stack([f[key] for f in frames])


def record(root, features, episodes, **kwargs) -> list[int]:
    with TrajectoryRecorder(root, FPS, features, **kwargs) as rec:
        return [_record_one(rec, task, frames, extra) for task, frames, extra in episodes]


def _record_one(rec: TrajectoryRecorder, task: str, frames: list[dict], extra: dict) -> int:
    rec.start_episode(task, extra={"seed": extra.get("seed")})
    for f in frames:
        rec.add_frame(f)
    return rec.end_episode(extra)


def assert_episode_equal(ds, i: int, frames: list[dict], features: dict) -> None:
    ep = ds.episode(i)
    for key in features:
        expected = stack(frames, key)
        assert ep[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(ep[key], expected, err_msg=key)
    n = len(frames)
    np.testing.assert_array_equal(ep["frame_index"].ravel(), np.arange(n))
    np.testing.assert_allclose(ep["timestamp"].ravel(), np.arange(n) / FPS, rtol=1e-6)
    assert (ep["episode_index"] == i).all()


# -- features -------------------------------------------------------------------------------------------
def test_features_for_pointnav_and_audio():
    from envs.pointnav.audio_env import PointNavAudioEnv

    env = PointNavAudioEnv(width=32, height=24)
    feats = features_for(env.observation_space, env.action_space, depth_stride=4)
    assert feats["observation.images.rgb"] == {
        "dtype": "image",
        "shape": [24, 32, 3],
        "names": ["height", "width", "channels"],
    }
    assert feats["observation.depth"]["shape"] == [6, 8, 1]
    assert feats["observation.pointgoal_with_gps_compass"]["names"] == ["rho", "phi"]
    assert feats["observation.audio"]["shape"] == list(env.observation_space["audio"].shape)
    assert feats["action"] == {"dtype": "int64", "shape": [1], "names": ["discrete_action"]}
    obs, info = env.reset(seed=3)
    frame = frame_from(obs, 1, 0.5, False, False, False, depth_stride=4)
    for key, ft in feats.items():
        assert frame[key].shape == tuple(ft["shape"]), key
    np.testing.assert_array_equal(frame["observation.depth"], obs["depth"][::4, ::4])
    assert extra_from_info(info)["sound"] == info["sound"]


def test_features_for_vima_and_action_round_trip():
    feats = features_for(vima_observation_space(), vima_action_space())
    assert feats["observation.images.front"]["shape"] == [128, 256, 3]
    assert feats["observation.images.top"]["shape"] == [128, 256, 3]
    assert feats["observation.ee"]["dtype"] == "int64"
    assert feats["action"]["shape"] == [12] and feats["action"]["names"] == VIMA_ACTION_NAMES
    rng = np.random.default_rng(1)
    obs, action = vima_obs(rng), vima_action(rng)
    frame = frame_from(obs, action, 0.0, False, True, False, task="p")
    np.testing.assert_array_equal(frame["observation.images.front"], obs["rgb"]["front"].transpose(1, 2, 0))
    assert frame["next.done"].tolist() == [True] and frame["task"] == "p"
    back = action_from_row(frame["action"])
    assert set(back) == set(action)
    for key in action:
        np.testing.assert_array_equal(back[key], action[key])
    assert action_from_row(action_to_row(np.int64(3))) == 3
    with pytest.raises(ValueError, match="cannot decode"):
        action_from_row(np.zeros(5, np.float32))


# -- round trips ----------------------------------------------------------------------------------------
def test_pointnav_round_trip_and_layout(tmp_path, pointnav_episodes):
    features, episodes = pointnav_episodes
    root = tmp_path / "pn"
    indices = record(root, features, [(t, f, extra_from_info(info)) for t, f, _, info in episodes])
    assert indices == [0, 1, 2]
    ds = open_dataset(root)
    lengths = [len(f) for _, f, _, _ in episodes]
    assert ds.num_episodes == 3 and ds.num_frames == sum(lengths) == len(ds)
    assert ds.tasks == ["navigate 0", "navigate 1"]
    for i, (task, frames, actions, info) in enumerate(episodes):
        assert_episode_equal(ds, i, frames, features)
        ep = ds.episode(i)
        assert [action_from_row(a) for a in ep["action"]] == actions
        assert set(ep["task"]) == {task}
        extra = ds.episode_extra(i)
        assert extra["seed"] is None  # start_episode's extra was merged under end_episode's
        for key in ("episode_id", "scene_id", "spl", "soft_spl", "success", "distance_to_goal"):
            assert extra[key] == info[key], key
    all_index = np.concatenate([ds.episode(i)["index"].ravel() for i in range(3)])
    np.testing.assert_array_equal(all_index, np.arange(ds.num_frames))

    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(lengths), 2)
    assert info["chunks_size"] == 1000 and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert "{video_key}" in info["video_path"]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert key in info["features"]
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0, 1], "task": ["navigate 0", "navigate 1"]}
    rows = pq.read_table(root / "meta/episodes/chunk-000/file-001.parquet").to_pylist()
    assert rows[0]["episode_index"] == 1 and rows[0]["length"] == lengths[1]
    assert rows[0]["dataset_from_index"] == lengths[0]
    assert rows[0]["dataset_to_index"] == lengths[0] + lengths[1]
    assert (rows[0]["data/chunk_index"], rows[0]["data/file_index"]) == (0, 1)
    image = pq.read_table(root / "data/chunk-000/file-000.parquet")["observation.images.rgb"][0].as_py()
    assert image["path"] is None and image["bytes"][:8] == b"\x89PNG\r\n\x1a\n"

    stats = json.loads((root / "meta/stats.json").read_text())
    all_frames = [f for _, frames, _, _ in episodes for f in frames]
    rgb = stack(all_frames, "observation.images.rgb").astype(np.float64) / 255
    np.testing.assert_allclose(np.ravel(stats["observation.images.rgb"]["mean"]), rgb.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(np.ravel(stats["observation.images.rgb"]["std"]), rgb.std(axis=(0, 1, 2)))
    assert np.shape(stats["observation.images.rgb"]["mean"]) == (3, 1, 1)
    goal = stack(all_frames, "observation.pointgoal_with_gps_compass").astype(np.float64)
    np.testing.assert_allclose(
        stats["observation.pointgoal_with_gps_compass"]["mean"], goal.mean(0), rtol=1e-6
    )
    np.testing.assert_allclose(stats["observation.pointgoal_with_gps_compass"]["std"], goal.std(0), rtol=1e-5)
    depth = stack(all_frames, "observation.depth")
    assert stats["observation.depth"]["min"] == [[[float(depth.min())]]]
    assert stats["action"]["count"] == [ds.num_frames]
    assert stats["index"]["max"] == [ds.num_frames - 1]
    for key, value in ds.stats.items():
        np.testing.assert_allclose(value["mean"], np.asarray(stats[key]["mean"]), err_msg=key)


def test_vima_round_trip_with_prompt_assets(tmp_path):
    features = features_for(vima_observation_space(), vima_action_space())
    episodes = [vima_episode(seed, length) for seed, length in ((0, 3), (1, 1), (2, 4))]
    record(tmp_path / "vima", features, [(p, f, e) for p, f, _, e in episodes], robot_type="tabletop")
    ds = open_dataset(tmp_path / "vima")
    assert ds.info["robot_type"] == "tabletop"
    assert ds.tasks == [p for p, _, _, _ in episodes]
    for i, (prompt, frames, actions, extra) in enumerate(episodes):
        assert_episode_equal(ds, i, frames, features)
        ep = ds.episode(i)
        assert ep["task"][0] == prompt
        for row, action in zip(ep["action"], actions, strict=True):
            back = action_from_row(row)
            for key in action:
                np.testing.assert_array_equal(back[key], action[key])
        got = ds.episode_extra(i)
        assert got["seed"] == extra["seed"] and got["env_id"] == extra["env_id"]
        assert got["success"] is True  # filled in from the last frame's next.success
        for name, asset in extra["prompt_assets"].items():
            back = got["prompt_assets"][name]
            assert back["placeholder_type"] == "object"
            assert back["segm"]["obj_info"] == asset["segm"]["obj_info"]
            for modality in ("rgb", "segm"):
                for view in ("front", "top"):
                    np.testing.assert_array_equal(back[modality][view], asset[modality][view])
    frames_seen = list(ds)
    assert len(frames_seen) == 8 and frames_seen[3]["episode_index"].item() == 1
    assert frames_seen[3]["observation.images.top"].shape == (128, 256, 3)


def test_append_to_existing_dataset(tmp_path, pointnav_episodes):
    features, episodes = pointnav_episodes
    root = tmp_path / "pn"
    record(root, features, [(t, f, {}) for t, f, _, _ in episodes[:2]])
    with TrajectoryRecorder(root, FPS, features) as rec:
        assert rec.num_episodes == 2
        assert _record_one(rec, "a new task", episodes[2][1], {}) == 2
    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.tasks == ["navigate 0", "navigate 1", "a new task"]
    assert ds.episode(2)["task_index"].ravel().tolist() == [2] * len(episodes[2][1])
    assert_episode_equal(ds, 2, episodes[2][1], features)
    index = np.concatenate([ds.episode(i)["index"].ravel() for i in range(3)])
    np.testing.assert_array_equal(index, np.arange(ds.num_frames))
    assert ds.stats["action"]["count"].tolist() == [ds.num_frames]

    other = {k: v for k, v in features.items() if k != "observation.depth"}
    with pytest.raises(ValueError, match=r"different features.*observation\.depth"):
        TrajectoryRecorder(root, FPS, other)
    with pytest.raises(ValueError, match="fps=10"):
        TrajectoryRecorder(root, 30, features)


# -- errors ---------------------------------------------------------------------------------------------
def small_features() -> dict:
    return {
        "observation.images.rgb": {
            "dtype": "image",
            "shape": [4, 4, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [2], "names": ["a", "b"]},
        "action": {"dtype": "int64", "shape": [1], "names": ["discrete_action"]},
    }


def small_frame(**overrides) -> dict:
    frame = {
        "observation.images.rgb": np.zeros((4, 4, 3), np.uint8),
        "observation.state": np.array([0.5, -1.0], np.float32),
        "action": np.array([2], np.int64),
    }
    return {**frame, **overrides}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({**small_frame(), "observation.extra": np.zeros(1)}, r"unexpected keys \['observation.extra'\]"),
        ({k: v for k, v in small_frame().items() if k != "action"}, r"missing keys \['action'\]"),
        (small_frame(**{"observation.state": np.zeros(3, np.float32)}), r"'observation.state'.*shape \(3,\)"),
        (small_frame(**{"observation.images.rgb": np.zeros((4, 4, 3))}), r"images.rgb'.*dtype float64"),
        (small_frame(action=np.array([1.5])), r"'action'.*dtype float64"),
        (small_frame(**{"observation.state": np.array([np.nan, 0.0])}), r"'observation.state'.*1 NaN"),
        (small_frame(**{"observation.state": np.array([np.inf, 0.0])}), r"NaN or inf"),
        (small_frame(task="another task"), r"differs from the episode's task"),
    ],
)
def test_add_frame_rejects_bad_frames(tmp_path, frame, message):
    with TrajectoryRecorder(tmp_path / "ds", FPS, small_features()) as rec:
        rec.start_episode("task")
        rec.add_frame(small_frame(action=3, task="task"))  # scalars are fine for shape (1,)
        with pytest.raises(ValueError, match=message):
            rec.add_frame(frame)
        rec.add_frame(small_frame(action=1))
        assert rec.end_episode() == 0
    ep = open_dataset(tmp_path / "ds").episode(0)
    assert ep["action"].ravel().tolist() == [3, 1]  # the rejected frame left no trace


def test_recorder_misuse_and_discard(tmp_path):
    root = tmp_path / "ds"
    with TrajectoryRecorder(root, FPS, small_features(), rows_per_group=2) as rec:
        with pytest.raises(RuntimeError, match="before start_episode"):
            rec.add_frame(small_frame())
        rec.start_episode("dropped")
        for _ in range(5):
            rec.add_frame(small_frame())
        with pytest.raises(RuntimeError, match="already in progress"):
            rec.start_episode("x")
        rec.discard_episode()
        assert not list((root / "data").rglob("*.parquet*"))
        rec.start_episode("kept")
        with pytest.raises(ValueError, match="no frames"):
            rec.end_episode()
        rec.add_frame(small_frame())
        assert rec.end_episode() == 0
        with pytest.raises(RuntimeError, match="already open"):
            TrajectoryRecorder(root, FPS, small_features())
        rec.start_episode("unfinished")
        rec.add_frame(small_frame())
    ds = open_dataset(root)  # close() discarded the unfinished episode
    assert ds.num_episodes == 1 and ds.tasks == ["kept"]
    with pytest.raises(ValueError, match="added by the recorder"):
        TrajectoryRecorder(tmp_path / "other", FPS, {**small_features(), "index": small_features()["action"]})


def test_not_a_dataset(tmp_path):
    with pytest.raises(NotADatasetError, match="is not a directory"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(NotADatasetError, match=r"meta/info\.json is missing"):
        open_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a dataset"):
        TrajectoryRecorder(tmp_path, FPS, small_features())
    bad = tmp_path / "old"
    (bad / "meta").mkdir(parents=True)
    (bad / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    with pytest.raises(NotADatasetError, match=r"v2\.1"):
        open_dataset(bad)


def test_reader_recomputes_lagging_metadata_and_ignores_orphans(tmp_path):
    root = tmp_path / "ds"
    with TrajectoryRecorder(root, FPS, small_features()) as rec:
        rec.start_episode("a")
        rec.add_frame(small_frame())
        rec.end_episode()
        stale_info = (root / "meta/info.json").read_text()
        stale_stats = (root / "meta/stats.json").read_text()
        rec.start_episode("b")
        for k in range(3):
            rec.add_frame(small_frame(action=k))
        rec.end_episode()
    # as if killed after episode 1's row but before the derived files, with an orphan of episode 2
    (root / "meta/info.json").write_text(stale_info)
    (root / "meta/stats.json").write_text(stale_stats)
    (root / "meta/tasks.parquet").unlink()
    orphan = root / "data/chunk-000/file-002.parquet"
    orphan.write_bytes((root / "data/chunk-000/file-001.parquet").read_bytes())
    (root / "data/chunk-000/file-003.parquet.tmp").write_bytes(b"partial")

    ds = open_dataset(root)
    assert (ds.num_episodes, ds.num_frames, ds.tasks) == (2, 4, ["a", "b"])
    assert ds.info["total_episodes"] == 2 and ds.stats["action"]["count"].tolist() == [4]
    np.testing.assert_allclose(ds.stats["action"]["mean"], [(2 + 0 + 1 + 2) / 4])
    with TrajectoryRecorder(root, FPS, small_features()):
        pass
    assert not orphan.exists() and not (root / "data/chunk-000/file-003.parquet.tmp").exists()
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 4, 2)


def test_lerobot_loads_recorded_dataset(tmp_path, pointnav_episodes):
    pytest.importorskip("lerobot", reason="lerobot is an optional conformance check (not installed)")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features, episodes = pointnav_episodes
    record(tmp_path / "pn", features, [(t, f, {}) for t, f, _, _ in episodes])
    ds = LeRobotDataset("local/recorded", root=tmp_path / "pn")
    assert ds.num_episodes == 3 and len(ds) == sum(len(f) for _, f, _, _ in episodes)
    item = ds[0]
    assert item["task"] == "navigate 0"
    assert tuple(item["observation.images.rgb"].shape) == (3, 32, 32)


def test_hf_datasets_reads_recorded_dataset(tmp_path, pointnav_episodes):
    """What lerobot does underneath, minus torch: HF `datasets` with its feature mapping; pandas for tasks."""
    datasets = pytest.importorskip("datasets", reason="HF datasets (the test extra) is not installed")
    pd = pytest.importorskip("pandas", reason="pandas (a dependency of HF datasets) is not installed")
    features, episodes = pointnav_episodes
    root = tmp_path / "pn"
    record(root, features, [(t, f, {}) for t, f, _, _ in episodes])
    hf = {}
    for key, ft in json.loads((root / "meta/info.json").read_text())["features"].items():
        shape = tuple(ft["shape"])
        if ft["dtype"] == "image":
            hf[key] = datasets.Image()
        elif shape == (1,):
            hf[key] = datasets.Value(ft["dtype"])
        elif len(shape) == 1:
            hf[key] = datasets.Sequence(length=shape[0], feature=datasets.Value(ft["dtype"]))
        else:
            hf[key] = datasets.Array3D(shape=shape, dtype=ft["dtype"])
    paths = [str(p) for p in sorted((root / "data").glob("*/*.parquet"))]
    data = datasets.Dataset.from_parquet(paths, features=datasets.Features(hf))
    ours = open_dataset(root)
    assert len(data) == ours.num_frames
    row, frame = data[len(episodes[0][1])], episodes[1][1][0]
    np.testing.assert_array_equal(np.asarray(row["observation.images.rgb"]), frame["observation.images.rgb"])
    np.testing.assert_array_equal(
        np.asarray(row["observation.depth"], np.float32), frame["observation.depth"]
    )
    assert row["episode_index"] == 1 and row["frame_index"] == 0
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.loc["navigate 1"].task_index == 1
    meta = [str(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))]
    rows = datasets.Dataset.from_parquet(meta)
    assert sorted(rows["episode_index"]) == [0, 1, 2]
