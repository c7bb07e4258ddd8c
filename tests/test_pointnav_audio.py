"""The audio goal: clip format, level with distance and walls, and left/right cues."""

import math

import numpy as np
import pytest

from envs.pointnav import audio
from envs.pointnav.audio_env import PointNavAudioEnv
from envs.pointnav.geometry import yaw_to_quaternion
from envs.pointnav.scene import scene_from_occupancy


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("name", audio.SOURCES)
def test_sources_are_distinct_and_bounded(name):
    x = audio.synthesize(name)
    assert x.dtype == np.float32 and x.shape == (32000,)
    assert rms(x) > 0.05 and np.abs(x).max() <= 0.5 + 1e-6
    others = [audio.synthesize(o) for o in audio.SOURCES if o != name]
    assert all(not np.allclose(x, o) for o in others)
    with pytest.raises(ValueError, match="unknown sound source"):
        audio.synthesize("violin")


def test_level_falls_with_distance_and_walls():
    src = audio.synthesize("phone")
    near = audio.spatialize(src, 0, 4000, 1.0, 1.0, 0.0, 0)
    far = audio.spatialize(src, 0, 4000, 4.0, 4.0, 0.0, 0)
    walled = audio.spatialize(src, 0, 4000, 4.0, 12.0, 0.0, 1)
    assert rms(near) / rms(far) == pytest.approx(4.0, rel=0.05)
    assert rms(walled) < 0.5 * rms(far)


def test_interaural_cues_point_to_the_source():
    src = audio.synthesize("noise_pulses")
    left = audio.spatialize(src, 0, 4000, 2.0, 2.0, math.pi / 2, 0)
    right = audio.spatialize(src, 0, 4000, 2.0, 2.0, -math.pi / 2, 0)
    assert rms(left[0]) > 1.5 * rms(left[1]) and rms(right[1]) > 1.5 * rms(right[0])
    # The far ear hears it later: the cross-correlation peaks at a positive lag of the right channel.
    a, b = left[0] - left[0].mean(), left[1] - left[1].mean()
    lags = range(-15, 16)
    best = max(lags, key=lambda k: float(np.dot(a[100:-100], np.roll(b, -k)[100:-100])))
    assert 5 <= best <= 12  # Woodworth ITD at 90 deg is ~0.66 ms ~ 10.5 samples at 16 kHz
    mono = audio.spatialize(src, 0, 4000, 2.0, 2.0, 0.3, 0, channels=1)
    assert mono.shape == (1, 4000)


def test_audio_env_observation_and_counts_walls():
    occ = np.zeros((60, 120), dtype=bool)
    occ[:, 59:61] = True
    occ[25:35, 59:61] = False  # a doorway
    scene = scene_from_occupancy(occ, scene_id="test:two-rooms")
    env = PointNavAudioEnv(width=16, height=16, scene=scene, audio_channels=2)
    assert env.observation_space["audio"].shape == (2, 4000)

    def episode(goal):
        return {
            "episode_id": "a",
            "scene_id": "test:two-rooms",
            "start_position": [1.0, 0.0, 0.5],
            "start_rotation": yaw_to_quaternion(0.0),
            "goals": [{"position": [goal[0], 0.0, goal[1]]}],
        }

    same_room, _ = env.reset(options={"episode": episode((1.0, 3.0 - 0.5))})
    other_room, _ = env.reset(options={"episode": episode((4.8, 0.5))})
    assert env.observation_space.contains(same_room) and same_room["audio"].dtype == np.float32
    # Same-room source 2 m away vs. a source 3.8 m away behind a wall.
    assert rms(same_room["audio"]) > 2.0 * rms(other_room["audio"])
    obs, *_ = env.step(1)
    assert obs["audio"].shape == (2, 4000)
    with pytest.raises(ValueError, match="audio_channels"):
        PointNavAudioEnv(width=8, height=8, audio_channels=3)


def test_audio_env_can_hide_the_gps():
    env = PointNavAudioEnv(width=8, height=8, scene_seed=0, pointgoal=False, audio_channels=1)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"rgb", "depth", "audio"} and obs["audio"].shape == (1, 4000)
    assert info["sound"] in audio.SOURCES
    assert env.observation_space.contains(obs)


def test_audio_env_passes_check_env():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    from envs.pointnav import register_envs

    register_envs()
    check_env(gym.make("uio2/PointNavAudio-v0", width=16, height=16, scene_seed=1).unwrapped)
