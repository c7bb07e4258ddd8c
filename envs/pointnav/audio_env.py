"""`uio2/PointNavAudio-v0`: PointNav where the goal also emits a sound (a SoundSpaces-style AudioGoal).

Same rules, episodes and info as PointNav-v0, plus observation `audio`: float32 (channels, samples),
16 kHz, one clip of `clip_seconds` (default 0.25 s = 4000 samples) per step, binaural by default
(channel 0 = left ear). Each episode's source is drawn from envs.pointnav.audio.SOURCES by the
episode id, so an episode file replays the same sound. Set `pointgoal=False` to hide the GPS+compass
(the audio then has to do the work, as in AudioGoal).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.pointnav import audio
from envs.pointnav.env import PointNavEnv
from envs.pointnav.geometry import pointgoal_polar


class PointNavAudioEnv(PointNavEnv):
    """PointNav with a sounding goal; see the module docstring for the audio contract."""

    def __init__(
        self,
        *args: Any,
        clip_seconds: float = 0.25,
        audio_channels: int = 2,
        pointgoal: bool = True,
        **kwargs: Any,
    ) -> None:
        if audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 (mono) or 2 (binaural), got {audio_channels}")
        if not 0.0 < clip_seconds <= audio.LOOP_SECONDS:
            raise ValueError(f"clip_seconds must be in (0, {audio.LOOP_SECONDS}], got {clip_seconds}")
        self.clip_samples = round(clip_seconds * audio.SAMPLE_RATE)
        self.audio_channels = audio_channels
        self.use_pointgoal = pointgoal
        super().__init__(*args, **kwargs)
        self._sources = {name: audio.synthesize(name, seed=k) for k, name in enumerate(audio.SOURCES)}
        self.sound_name = audio.SOURCES[0]

    def _observation_spaces(self) -> dict[str, spaces.Space]:
        out = super()._observation_spaces()
        if not getattr(self, "use_pointgoal", True):
            del out["pointgoal_with_gps_compass"]
        out["audio"] = spaces.Box(-1.0, 1.0, (self.audio_channels, self.clip_samples), np.float32)
        return out

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        obs, info = super().reset(seed=seed, options=options)
        assert self.episode is not None
        key = zlib.crc32(f"{self.episode.scene_id}/{self.episode.episode_id}".encode())
        self.sound_name = audio.SOURCES[key % len(audio.SOURCES)]
        obs["audio"] = self._hear()
        info["sound"] = self.sound_name
        return obs, info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        obs["audio"] = self._hear()
        info["sound"] = self.sound_name
        return obs, reward, terminated, truncated, info

    def _observe(self) -> dict[str, np.ndarray]:
        obs = super()._observe()
        if not self.use_pointgoal:
            del obs["pointgoal_with_gps_compass"]
        return obs

    def _hear(self) -> np.ndarray:
        """The clip for the current step: source time advances by one clip per step."""
        assert self.nav is not None and self.goal_field is not None
        goal, pos = self.goal_field.goal, self.agent_position
        distance = float(np.hypot(*(goal - pos)))
        azimuth = float(pointgoal_polar(pos, self.agent_yaw, goal)[1])
        walls = audio.count_walls(self.nav.scene.occupancy, self.nav.res, pos, goal)
        return audio.spatialize(
            self._sources[self.sound_name],
            start=self.metrics.num_steps * self.clip_samples,
            length=self.clip_samples,
            distance=distance,
            geodesic=self.metrics.distance_to_goal,
            azimuth=azimuth,
            n_walls=walls,
            channels=self.audio_channels,
        )
