"""PointNav with Habitat's rules on procedural houses (numpy ray casting), plus an audio-goal variant.

Modules, one job each: scene (floor plans), navmesh (navigability, sliding, geodesics) with visgraph
(exact shortest paths), render (numpy ray casting; render_tiny: the former pybullet renderer, kept as
the reference) with planes (floor tables), geometry (Habitat frames), actions, episodes
(PointNav-v1 I/O and generator), metrics, topdown (map frames), env / audio_env (the Gymnasium envs),
audio (sound), oracle. Usage and the rules: docs/habitat.md.
"""

from __future__ import annotations

import gymnasium as gym

from envs.pointnav.env import PointNavEnv
from envs.pointnav.episodes import NavEpisode, generate_episodes, load_episodes, save_episodes
from envs.pointnav.oracle import Oracle

ENV_IDS = {
    "uio2/PointNav-v0": "envs.pointnav.env:PointNavEnv",
    "uio2/PointNavAudio-v0": "envs.pointnav.audio_env:PointNavAudioEnv",
}

__all__ = [
    "ENV_IDS",
    "NavEpisode",
    "Oracle",
    "PointNavEnv",
    "generate_episodes",
    "load_episodes",
    "register_envs",
    "save_episodes",
]


def register_envs() -> None:
    """Register the PointNav ids with Gymnasium; ids already registered are left alone."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
