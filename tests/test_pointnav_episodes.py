"""PointNav-v1 files: round trip, Habitat's layout, clear errors, and the generator's rules."""

import gzip
import json
import math

import numpy as np
import pytest

from envs.pointnav.env import PointNavEnv
from envs.pointnav.episodes import (
    EpisodeFormatError,
    _ratio_sample_rate,
    generate_episodes,
    load_episodes,
    save_episodes,
)


@pytest.fixture(scope="module")
def episodes():
    return generate_episodes([0, 1], per_scene=3, seed=7)


def test_round_trip_json_and_gz(tmp_path, episodes):
    for name in ("val.json", "val.json.gz"):
        path = save_episodes(episodes, tmp_path / name)
        back = load_episodes(path)
        assert [e.to_json() for e in back] == [e.to_json() for e in episodes]
    with gzip.open(tmp_path / "val.json.gz", "rt") as f:
        raw = json.load(f)
    ep = raw["episodes"][0]
    # Habitat's NavigationEpisode fields.
    for key in ("episode_id", "scene_id", "start_position", "start_rotation", "goals", "info"):
        assert key in ep
    assert len(ep["start_position"]) == 3 and len(ep["start_rotation"]) == 4
    assert set(ep["goals"][0]) == {"position", "radius"}
    assert ep["start_position"][1] == 0.0  # y is up; the floor is at 0


def test_generator_follows_habitat_rules(episodes):
    assert len(episodes) == 6 and len({e.episode_id for e in episodes}) == 6
    for e in episodes:
        d = e.info["geodesic_distance"]
        euclid = math.dist(e.start_position, e.goals[0]["position"])
        assert 1.0 <= d <= 30.0
        assert d >= euclid - 1e-9
    assert {e.scene_id for e in episodes} == {"procedural:0", "procedural:1"}
    assert _ratio_sample_rate(1.0, 1.1) == pytest.approx(20 * 0.02**2)
    assert generate_episodes([0], 2, seed=3)[1].to_json() == generate_episodes([0], 2, seed=3)[1].to_json()


def test_loaded_file_drives_the_env(tmp_path, episodes):
    path = save_episodes(episodes, tmp_path / "eps.json.gz")
    env = PointNavEnv(width=16, height=16, episodes=str(path))
    _, info = env.reset(seed=1)
    assert info["episode_id"] == episodes[1].episode_id and info["scene_id"] == episodes[1].scene_id
    assert info["distance_to_goal"] == pytest.approx(episodes[1].info["geodesic_distance"], rel=1e-6)
    _, info = env.reset()
    assert info["episode_id"] == episodes[2].episode_id  # then in order


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e.pop("goals"), "episodes[1].goals"),
        (lambda e: e.update(start_position=[1.0, 2.0]), "episodes[1].start_position"),
        (lambda e: e.update(start_rotation=[0, 0, 0, "w"]), "episodes[1].start_rotation"),
        (lambda e: e["goals"][0].update(position=None), "episodes[1].goals[0].position"),
        (lambda e: e.update(scene_id=3), "episodes[1].scene_id"),
        (lambda e: e.update(info={"geodesic_distance": "far"}), "episodes[1].info.geodesic_distance"),
    ],
)
def test_malformed_episode_names_the_field(tmp_path, episodes, mutate, field):
    data = {"episodes": [e.to_json() for e in episodes[:2]]}
    mutate(data["episodes"][1])
    with pytest.raises(EpisodeFormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        load_episodes(_write(tmp_path, data))


def test_malformed_files(tmp_path):
    with pytest.raises(EpisodeFormatError, match="episodes: missing"):
        load_episodes(_write(tmp_path, {"eps": []}))
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(EpisodeFormatError, match="not valid JSON"):
        load_episodes(bad)
    with pytest.raises(ValueError, match="Habitat scenes"):
        data = {
            "episodes": [
                {
                    "episode_id": 0,
                    "scene_id": "gibson/Adrian.glb",
                    "start_position": [0, 0, 0],
                    "start_rotation": [0, 0, 0, 1],
                    "goals": [{"position": [1, 0, 1]}],
                }
            ]
        }
        PointNavEnv(width=8, height=8, episodes=str(_write(tmp_path, data, "hab.json"))).reset()


def test_habitat_content_layout(tmp_path, episodes):
    split = tmp_path / "val" / "val.json.gz"
    save_episodes([], split)
    save_episodes(episodes[:2], tmp_path / "val" / "content" / "a.json.gz")
    save_episodes(episodes[2:3], tmp_path / "val" / "content" / "b.json.gz")
    assert [e.episode_id for e in load_episodes(split)] == [e.episode_id for e in episodes[:3]]
    assert np.allclose(load_episodes(split)[0].start_position, episodes[0].start_position)


def test_generated_episodes_are_mostly_not_straight_lines():
    eps = generate_episodes([3], per_scene=20, seed=1)
    ratios = [e.info["geodesic_distance"] / math.dist(e.start_position, e.goals[0]["position"]) for e in eps]
    assert np.mean(np.array(ratios) < 1.1) <= 0.2
