"""The recording child of tests/test_dataset_kill.py: records episodes whose frames are a pure function
of (episode, frame index), and can stop at a named checkpoint of the recorder until it is killed.

Run as `python kill_recorder.py ROOT STOP FRAME_DELAY PAUSE_AT PAUSE_EPISODE FSYNC`; it imports numpy
and the recorder only (no pytest, no jax), so that each child starts fast.
"""

from __future__ import annotations

import sys
import time

import numpy as np

FPS = 15
FEATURES = {
    "observation.images.rgb": {
        "dtype": "image",
        "shape": [8, 8, 3],
        "names": ["height", "width", "channels"],
    },
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "action": {"dtype": "int64", "shape": [1], "names": ["discrete_action"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
}


def episode_length(k: int) -> int:
    return 20 + (7 * k) % 13


def task_of(k: int) -> str:
    return f"task {k % 3}"


def make_frame(k: int, t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([k, t])
    done = t == episode_length(k) - 1
    return {
        "observation.images.rgb": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
        "observation.state": rng.normal(size=3).astype(np.float32),
        "action": np.array([(k + t) % 4], np.int64),
        "next.reward": np.array([0.5 * t], np.float32),
        "next.done": np.array([done]),
        "next.success": np.array([done and k % 2 == 0]),
    }


def child_main(
    root: str, stop: int, frame_delay: float, pause_at: str = "", pause_episode: int = -1, fsync: bool = True
) -> None:
    """Record episodes until `stop`; at checkpoint (`pause_at`, `pause_episode`) say so and wait.

    fsync only matters for power loss (a killed process's writes survive in the page cache); the tests
    that kill at fixed points turn it off to run faster, the random kills keep it.
    """
    from agent import recording

    def hook(point: str, episode: int) -> None:
        if point == pause_at and episode == pause_episode:
            print(f"paused {point}", flush=True)
            time.sleep(60)  # the parent kills us here

    recording.checkpoint_hook = hook
    rec = recording.TrajectoryRecorder(root, FPS, FEATURES, rows_per_group=4, fsync=fsync)
    print("ready", flush=True)
    for k in range(rec.num_episodes, stop):
        rec.start_episode(task_of(k), extra={"k": k})
        for t in range(episode_length(k)):
            rec.add_frame(make_frame(k, t))
            if t == 5:
                print(f"started {k}", flush=True)
            time.sleep(frame_delay)
        rec.end_episode({"length": episode_length(k)})
        print(f"committed {k}", flush=True)
    rec.close()


if __name__ == "__main__":
    root, stop, delay, pause_at, pause_episode, fsync = sys.argv[1:]
    child_main(root, int(stop), float(delay), pause_at, int(pause_episode), fsync == "1")
