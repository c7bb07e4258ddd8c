"""PointNav episodes: Habitat's PointNav-v1 JSON(.gz) format, read and written, and the generator's rules.

A file written here loads in habitat-lab's `PointNavDatasetV1` and a Habitat file loads here (its
scenes then need habitat-sim, see envs.habitat). Reading checks every field and names the first bad
one, e.g. `episodes[3].goals[0].position`, because a silent wrong start pose ruins an evaluation.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.pointnav.geometry import to_xyz, to_xz, yaw_to_quaternion
from envs.pointnav.navmesh import NavGrid

# Habitat's pointnav_generator defaults.
NEAR_DISTANCE = 1.0
FAR_DISTANCE = 30.0
GEODESIC_TO_EUCLID_RATIO = 1.1
RETRIES_PER_TARGET = 10


class EpisodeFormatError(ValueError):
    """A PointNav-v1 file or episode dict is malformed; the message names the field."""


@dataclass
class NavEpisode:
    """One PointNav episode, fields as in Habitat's `NavigationEpisode`."""

    episode_id: str
    scene_id: str
    start_position: list[float]
    start_rotation: list[float]
    goals: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    shortest_paths: list | None = None
    start_room: str | None = None
    scene_dataset_config: str = "default"
    additional_obj_config_paths: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "scene_id": self.scene_id,
            "scene_dataset_config": self.scene_dataset_config,
            "additional_obj_config_paths": list(self.additional_obj_config_paths),
            "start_position": [float(v) for v in self.start_position],
            "start_rotation": [float(v) for v in self.start_rotation],
            "info": dict(self.info),
            "goals": [
                {"position": [float(v) for v in g["position"]], "radius": g.get("radius")} for g in self.goals
            ],
            "shortest_paths": self.shortest_paths,
            "start_room": self.start_room,
        }

    @property
    def goal_xz(self) -> np.ndarray:
        return to_xz(self.goals[0]["position"])


def _vector(value: Any, n: int, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != n:
        raise EpisodeFormatError(f"{where}: expected a list of {n} numbers, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise EpisodeFormatError(f"{where}: expected finite numbers, got {value!r}")
        out.append(float(v))
    return out


def episode_from_json(d: Any, where: str = "episode") -> NavEpisode:
    """Validate one episode dict and build a NavEpisode; errors name the offending field."""
    if not isinstance(d, dict):
        raise EpisodeFormatError(f"{where}: expected an object, got {type(d).__name__}")
    for key in ("episode_id", "scene_id", "start_position", "start_rotation", "goals"):
        if key not in d:
            raise EpisodeFormatError(f"{where}.{key}: missing required field")
    if not isinstance(d["episode_id"], str | int) or isinstance(d["episode_id"], bool):
        raise EpisodeFormatError(f"{where}.episode_id: expected a string or int, got {d['episode_id']!r}")
    if not isinstance(d["scene_id"], str) or not d["scene_id"]:
        raise EpisodeFormatError(f"{where}.scene_id: expected a non-empty string, got {d['scene_id']!r}")
    start = _vector(d["start_position"], 3, f"{where}.start_position")
    rot = _vector(d["start_rotation"], 4, f"{where}.start_rotation")
    if sum(v * v for v in rot) < 1e-12:
        raise EpisodeFormatError(f"{where}.start_rotation: quaternion has zero norm")
    goals = d["goals"]
    if not isinstance(goals, list) or not goals:
        raise EpisodeFormatError(f"{where}.goals: expected a non-empty list, got {goals!r}")
    parsed_goals = []
    for k, g in enumerate(goals):
        if not isinstance(g, dict) or "position" not in g:
            raise EpisodeFormatError(f"{where}.goals[{k}].position: missing required field")
        pos = _vector(g["position"], 3, f"{where}.goals[{k}].position")
        radius = g.get("radius")
        if radius is not None and (
            not isinstance(radius, int | float) or isinstance(radius, bool) or radius < 0
        ):
            raise EpisodeFormatError(
                f"{where}.goals[{k}].radius: expected null or a number >= 0, got {radius!r}"
            )
        parsed_goals.append({"position": pos, "radius": radius})
    info = d.get("info") or {}
    if not isinstance(info, dict):
        raise EpisodeFormatError(f"{where}.info: expected an object, got {info!r}")
    gd = info.get("geodesic_distance")
    if gd is not None and (not isinstance(gd, int | float) or isinstance(gd, bool)):
        raise EpisodeFormatError(f"{where}.info.geodesic_distance: expected a number, got {gd!r}")
    return NavEpisode(
        episode_id=str(d["episode_id"]),
        scene_id=d["scene_id"],
        start_position=start,
        start_rotation=rot,
        goals=parsed_goals,
        info=dict(info),
        shortest_paths=d.get("shortest_paths"),
        start_room=d.get("start_room"),
        scene_dataset_config=d.get("scene_dataset_config", "default") or "default",
        additional_obj_config_paths=list(d.get("additional_obj_config_paths") or []),
    )


def _open_json(path: Path) -> Any:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return json.load(f)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, EOFError) as e:
        raise EpisodeFormatError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise EpisodeFormatError(f"{path}: not valid JSON: {e}") from e


def load_episodes(path: str | Path) -> list[NavEpisode]:
    """Read a PointNav-v1 `.json` or `.json.gz` file.

    A Habitat split file with an empty `episodes` list and per-scene files under `content/` (Gibson,
    HM3D) is followed into those files, as habitat-lab does.
    """
    path = Path(path)
    data = _open_json(path)
    if not isinstance(data, dict):
        raise EpisodeFormatError(f"{path}: top level must be an object with an 'episodes' list")
    if "episodes" not in data:
        raise EpisodeFormatError(f"{path}: episodes: missing required field")
    if not isinstance(data["episodes"], list):
        raise EpisodeFormatError(f"{path}: episodes: expected a list, got {type(data['episodes']).__name__}")
    episodes = [episode_from_json(e, f"episodes[{i}]") for i, e in enumerate(data["episodes"])]
    content = path.parent / "content"
    if not episodes and content.is_dir():
        for sub in sorted(content.glob("*.json*")):
            episodes.extend(load_episodes(sub))
    return episodes


def save_episodes(episodes: Iterable[NavEpisode], path: str | Path) -> Path:
    """Write episodes as PointNav-v1 JSON (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"episodes": [e.to_json() for e in episodes]})
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _ratio_sample_rate(ratio: float, threshold: float) -> float:
    """Habitat's acceptance probability for near-straight episodes: 20 (ratio - 0.98)^2."""
    return 20.0 * (ratio - 0.98) ** 2


def generate_episode(
    nav: NavGrid,
    rng: np.random.Generator,
    episode_id: str | int,
    near: float = NEAR_DISTANCE,
    far: float = FAR_DISTANCE,
    ratio_threshold: float = GEODESIC_TO_EUCLID_RATIO,
    max_targets: int = 200,
) -> NavEpisode:
    """One episode by Habitat's generator rules: geodesic in [near, far], straight ones mostly rejected.

    As in `pointnav_generator.py`: sample a target, try up to 10 sources for it, reject unreachable
    pairs, pairs outside [near, far], and pairs with geodesic/euclidean < 1.1 unless a coin with
    probability 20 (ratio - 0.98)^2 says keep; the start heading is uniform.
    """
    for _ in range(max_targets):
        target = nav.sample_navigable(rng)
        field_ = nav.goal_field(target)
        for _ in range(RETRIES_PER_TARGET):
            source = nav.sample_navigable(rng)
            d = nav.geodesic_distance(source, field_)
            if not math.isfinite(d) or not near <= d <= far:
                continue
            euclid = float(np.hypot(*(target - source)))
            ratio = d / max(euclid, 1e-9)
            if ratio < ratio_threshold and rng.random() > _ratio_sample_rate(ratio, ratio_threshold):
                continue
            yaw = float(rng.uniform(0.0, 2.0 * math.pi))
            return NavEpisode(
                episode_id=str(episode_id),
                scene_id=nav.scene.scene_id,
                start_position=to_xyz(source),
                start_rotation=yaw_to_quaternion(yaw),
                goals=[{"position": to_xyz(target), "radius": None}],
                info={"geodesic_distance": d},
            )
    raise RuntimeError(f"scene {nav.scene.scene_id!r}: no valid episode after {max_targets} targets")


def generate_episodes(scene_seeds: Iterable[int], per_scene: int, seed: int = 0) -> list[NavEpisode]:
    """`per_scene` episodes in each procedural scene, reproducibly from `seed`."""
    from envs.pointnav.scene import procedural_scene

    rng = np.random.default_rng(seed)
    out: list[NavEpisode] = []
    for s in scene_seeds:
        nav = NavGrid(procedural_scene(int(s)))
        out.extend(generate_episode(nav, rng, len(out)) for _ in range(per_scene))
    return out
