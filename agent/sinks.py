"""Episode sinks for the runner: trajectory recording (LeRobot v3 layout) and videos.

A sink sees every step of one env slot (see agent.rollout.EpisodeSink). The recording sink writes
one dataset episode per env episode and commits it when the episode ends; the video sink renders
the env each step and writes `<task>_ep<k>.gif` (or .mp4) with the prompt and decoded actions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agent.rollout import EpisodeSink


class RecordingSink(EpisodeSink):
    """Records into a shared `TrajectoryRecorder`; one slot records one episode at a time."""

    def __init__(self, recorder: Any, env_id: str, depth_stride: int = 1):
        self.recorder, self.env_id, self.depth_stride = recorder, env_id, depth_stride
        self.task = ""

    def start(self, slot_task: str, seed: int, env: gym.Env, obs: Any, info: dict) -> None:
        self.task = str(info.get("prompt") or self.env_id)
        self.frames: list[dict[str, Any]] = []
        self.meta = {"seed": seed, "env": self.env_id, "task_name": slot_task,
                     "prompt_assets": info.get("prompt_assets") or {},
                     "meta_info": info.get("meta_info") or {}}  # fmt: skip

    def step(self, obs, action, reward, terminated, truncated, info, policy_info) -> None:
        from training.features import frame_from

        self.frames.append(
            frame_from(
                obs,
                action,
                reward,
                terminated,
                truncated,
                bool(info.get("success", False)),
                task=self.task,
                depth_stride=self.depth_stride,
            )
        )

    def end(self, result: dict[str, Any]) -> None:
        # frames are buffered per slot and written at the end, so env slots stepping together never
        # interleave inside the recorder; a crash loses at most the episodes in progress
        self.recorder.start_episode(self.task, self.meta)
        try:
            for frame in self.frames:
                self.recorder.add_frame(frame)
        except Exception:
            self.recorder.discard_episode()
            raise
        self.recorder.end_episode({k: v for k, v in result.items() if k != "task"})


def _prompt_images(prompt: str, assets: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """A VIMA prompt's object images, (placeholder, front view cropped to the object), in prompt order."""
    from policies.prompting import chw_to_hwc, crop_to_object

    names = list(dict.fromkeys(re.findall(r"\{(\w+)\}", prompt)))
    out = []
    for n in names:
        rgb = (assets.get(n) or {}).get("rgb") or {}
        if "front" in rgb:
            out.append((n, crop_to_object(chw_to_hwc(rgb["front"]))))
    return out


class VideoSink(EpisodeSink):
    """Renders every step and writes one captioned video per episode into `out_dir`."""

    def __init__(self, out_dir: str | Path, fps: float = 4.0, suffix: str = ".gif"):
        self.out_dir, self.fps, self.suffix = Path(out_dir), fps, suffix

    def start(self, slot_task: str, seed: int, env: gym.Env, obs: Any, info: dict) -> None:
        self.env, self.task, self.seed = env, slot_task, seed
        self.prompt = str(info.get("prompt") or slot_task)
        self.prompt_images = _prompt_images(self.prompt, info.get("prompt_assets") or {})
        self.frames: list[np.ndarray] = [self._frame()]
        self.actions: list[str] = []

    def _frame(self) -> np.ndarray:
        frame = self.env.render()
        if frame is None:
            raise ValueError("videos need an env created with render_mode='rgb_array'")
        return np.asarray(frame, np.uint8)

    def step(self, obs, action, reward, terminated, truncated, info, policy_info) -> None:
        from training.features import action_to_row, describe_action

        self.actions.append(policy_info.get("decoded_text") or describe_action(action_to_row(action)))
        self.frames.append(self._frame())

    def end(self, result: dict[str, Any]) -> None:
        from agent.video import write_video

        name = self.task.replace("/", "_")
        path = self.out_dir / f"{name}_seed{self.seed}{self.suffix}"
        write_video(
            path, self.frames, self.fps, self.prompt, [*self.actions, "success" if result["success"] else ""],
            prompt_images=self.prompt_images,
        )
        result["video"] = str(path)
