"""Every env is registered with Gymnasium under its uio2/ id and builds through gymnasium.make."""

import gymnasium as gym

from agent.envs import register_all


def test_register_all_is_idempotent_and_ids_build():
    register_all()
    register_all()
    ids = [i for i in gym.registry if i.startswith("uio2/")]
    assert "uio2/PointNav-v0" in ids and "uio2/PointNavAudio-v0" in ids
    assert "uio2/tabletop-visual_manipulation-v0" in ids and "uio2/vima-visual_manipulation-v0" in ids
    env = gym.make("uio2/PointNav-v0", width=16, height=16)
    obs, _ = env.reset(seed=0)
    assert obs["rgb"].shape == (16, 16, 3)
    env.close()
    env = gym.make("uio2/tabletop-rotate-v0")
    obs, info = env.reset(seed=0)
    assert "prompt" in info and obs["rgb"]["front"].shape == (3, 128, 256)
    env.close()
