"""`uio2/PointNav-v0`: point-goal navigation with Habitat's rules, on procedural houses, headless.

Rules (habitat-lab's PointNav benchmark configs): actions 0 STOP, 1 MOVE_FORWARD 0.25 m, 2 TURN_LEFT
10 deg, 3 TURN_RIGHT 10 deg; sliding collisions; 500 steps; success = STOP within 0.2 m geodesic;
SPL and soft-SPL as in tasks/nav/nav.py; reward = -delta(distance) - 0.01 + 2.5 on success.
STOP ends the episode (`terminated`); the step limit gives `truncated`.

Episodes come from a PointNav-v1 file or list (taken in order; `reset(seed=s)` starts at index
s mod N), or, by default, are generated at each reset from the reset seed with Habitat's generator
rules in a procedural house (`scene_seed`, or one drawn from the seed among `num_scenes`), or in
`scene` (a Scene, or an occupancy image path: .npy or PGM, 5 cm per pixel, dark = blocked).
`oracle_action()` gives the shortest-path follower's next action (see envs.pointnav.oracle).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.pointnav.actions import MOVE_FORWARD, STOP, TURN_LEFT, TURN_RIGHT, parse_action
from envs.pointnav.episodes import NavEpisode, episode_from_json, generate_episode, load_episodes
from envs.pointnav.geometry import forward_vector, pointgoal_polar, quaternion_to_yaw, to_xz
from envs.pointnav.metrics import SUCCESS_DISTANCE, EpisodeMetrics
from envs.pointnav.navmesh import GoalField, NavGrid
from envs.pointnav.render import SceneRenderer
from envs.pointnav.scene import Scene, procedural_scene, scene_from_id, scene_from_occupancy
from envs.pointnav.topdown import base_map, draw_map, fit_height

FORWARD_STEP = 0.25
TURN_ANGLE = math.radians(10.0)
SLACK_REWARD = -0.01
SUCCESS_REWARD = 2.5
_F32 = np.finfo(np.float32)


class PointNavEnv(gym.Env):
    """PointNav with Habitat's rules; observations `rgb`, `depth`, `pointgoal_with_gps_compass`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        width: int = 256,
        height: int = 256,
        hfov: float = 90.0,
        episodes: str | Path | list[NavEpisode | dict[str, Any]] | None = None,
        scene_seed: int | None = None,
        num_scenes: int = 1000,
        scene: Scene | str | Path | None = None,
        max_episode_steps: int = 500,
        success_distance: float = SUCCESS_DISTANCE,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        if int(width) < 1 or int(height) < 1:
            raise ValueError(f"width and height must be >= 1, got {width}x{height}")
        if not 0.0 < float(hfov) < 180.0:
            raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        if num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {num_scenes}")
        self.render_mode = render_mode
        self.width, self.height, self.hfov = int(width), int(height), float(hfov)
        self.max_episode_steps = int(max_episode_steps)
        self.success_distance = float(success_distance)
        self.scene_seed = scene_seed
        self.num_scenes = int(num_scenes)
        self.episodes = self._read_episodes(episodes)
        self._cursor = 0
        self.action_space = spaces.Discrete(4)
        self.observation_space = spaces.Dict(self._observation_spaces())
        self._navs: OrderedDict[str, NavGrid] = OrderedDict()
        if isinstance(scene, str | Path):
            scene = scene_from_occupancy(scene)
        self.scene = scene
        self._renderer: SceneRenderer | None = None
        self._oracle = None
        self.nav: NavGrid | None = None
        self.goal_field: GoalField | None = None
        self.episode: NavEpisode | None = None
        self.metrics = EpisodeMetrics(success_distance=self.success_distance)
        self.agent_position = np.zeros(2)
        self.agent_yaw = 0.0
        self._path: list[np.ndarray] = []
        self._done = True
        self._last_rgb: np.ndarray | None = None
        self._map_cache: tuple[str, np.ndarray] | None = None

    # -- setup ----------------------------------------------------------------------------------------
    @staticmethod
    def _read_episodes(episodes: Any) -> list[NavEpisode] | None:
        if episodes is None:
            return None
        if isinstance(episodes, str | Path):
            out = load_episodes(episodes)
        else:
            out = [
                e if isinstance(e, NavEpisode) else episode_from_json(e, f"episodes[{i}]")
                for i, e in enumerate(episodes)
            ]
        if not out:
            raise ValueError("episodes: the episode list is empty")
        return out

    def _observation_spaces(self) -> dict[str, spaces.Space]:
        return {
            "rgb": spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
            "depth": spaces.Box(0.0, 1.0, (self.height, self.width, 1), np.float32),
            "pointgoal_with_gps_compass": spaces.Box(_F32.min, _F32.max, (2,), np.float32),
        }

    def _nav_for(self, scene_id: str, scene: Scene | None = None) -> NavGrid:
        """Navigation grid of a scene, cached (a few), with the renderer switched to it."""
        nav = self._navs.get(scene_id)
        if nav is None:
            if scene is None and self.scene is not None and self.scene.scene_id == scene_id:
                scene = self.scene
            nav = NavGrid(scene if scene is not None else scene_from_id(scene_id))
            self._navs[scene_id] = nav
            while len(self._navs) > 4:
                self._navs.popitem(last=False)
        self._navs.move_to_end(scene_id)
        if self._renderer is None:
            self._renderer = SceneRenderer(nav.scene, self.width, self.height, self.hfov)
        elif self._renderer.scene_id != scene_id:
            self._renderer.load(nav.scene)
        return nav

    def _next_episode(self, seed: int | None, options: dict[str, Any]) -> NavEpisode:
        if "episode" in options:
            ep = options["episode"]
            return ep if isinstance(ep, NavEpisode) else episode_from_json(ep, "options['episode']")
        if self.episodes is not None:
            if "episode_index" in options:
                self._cursor = int(options["episode_index"])
            elif seed is not None:
                self._cursor = int(seed)
            ep = self.episodes[self._cursor % len(self.episodes)]
            self._cursor += 1
            return ep
        if self.scene is not None:
            nav = self._nav_for(self.scene.scene_id)
            return generate_episode(nav, self.np_random, int(self.np_random.integers(2**31)))
        scene_seed = (
            self.scene_seed if self.scene_seed is not None else int(self.np_random.integers(self.num_scenes))
        )
        scene_id = f"procedural:{scene_seed}"
        if scene_id not in self._navs:
            self._nav_for(scene_id, procedural_scene(scene_seed))
        return generate_episode(self._navs[scene_id], self.np_random, int(self.np_random.integers(2**31)))

    # -- gymnasium API --------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        ep = self._next_episode(seed, options or {})
        self.nav = self._nav_for(ep.scene_id)
        self.episode = ep
        goal = self.nav.snap(ep.goal_xz)
        self.goal_field = self.nav.goal_field(goal)
        self.agent_position = self.nav.snap(to_xz(ep.start_position))
        self.agent_yaw = quaternion_to_yaw(ep.start_rotation)
        d = self.nav.geodesic_distance(self.agent_position, self.goal_field)
        if not math.isfinite(d):
            raise ValueError(f"episode {ep.episode_id} in {ep.scene_id}: goal is unreachable from the start")
        self.metrics.reset(self.agent_position, d)
        self._path = [self.agent_position.copy()]
        self._done = False
        self._oracle = None
        return self._observe(), self._info(collided=False)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        reward, terminated, truncated, info = self.transition(action)
        return self._observe(), reward, terminated, truncated, info

    def transition(self, action: Any) -> tuple[float, bool, bool, dict]:
        """`step` without the observation (nothing rendered): for planners and path checks."""
        a = parse_action(action)
        if self._done or self.nav is None or self.goal_field is None:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        collided = False
        if a == MOVE_FORWARD:
            target = self.agent_position + FORWARD_STEP * forward_vector(self.agent_yaw)
            new = self.nav.try_step(self.agent_position, target - self.agent_position)
            moved = float(np.hypot(*(new - self.agent_position)))
            collided = FORWARD_STEP - moved > 1e-5  # Habitat: distance lost to the sliding filter
            self.agent_position = new
            self._path.append(new.copy())
        elif a == TURN_LEFT:
            self.agent_yaw += TURN_ANGLE
        elif a == TURN_RIGHT:
            self.agent_yaw -= TURN_ANGLE
        self.agent_yaw = (self.agent_yaw + math.pi) % (2 * math.pi) - math.pi
        previous = self.metrics.distance_to_goal
        d = self.nav.geodesic_distance(self.agent_position, self.goal_field)
        self.metrics.update(self.agent_position, d, collided, a == STOP)
        terminated = a == STOP
        truncated = not terminated and self.metrics.num_steps >= self.max_episode_steps
        self._done = terminated or truncated
        reward = -(d - previous) + SLACK_REWARD + (SUCCESS_REWARD if self.metrics.success else 0.0)
        return float(reward), terminated, truncated, self._info(collided)

    def _observe(self) -> dict[str, np.ndarray]:
        assert self._renderer is not None and self.episode is not None
        rgb, depth = self._renderer.render(self.agent_position, self.agent_yaw)
        self._last_rgb = rgb
        goal = self.episode.goal_xz  # as Habitat: the episode's goals[0].position, not its navmesh snap
        return {
            "rgb": rgb,
            "depth": depth,
            "pointgoal_with_gps_compass": pointgoal_polar(self.agent_position, self.agent_yaw, goal),
        }

    def _info(self, collided: bool) -> dict[str, Any]:
        m = self.metrics
        assert self.episode is not None
        return {
            "distance_to_goal": float(m.distance_to_goal),
            "success": m.success,
            "spl": float(m.spl),
            "soft_spl": float(m.soft_spl),
            "collisions": int(m.collisions),
            "collided": bool(collided),
            "num_steps": int(m.num_steps),
            "episode_id": self.episode.episode_id,
            "scene_id": self.episode.scene_id,
        }

    def render(self) -> np.ndarray | None:
        """The last RGB frame beside a top-down map (plan, walked path, agent, goal), for videos."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode='rgb_array'")
            return None
        if self.nav is None or self._last_rgb is None or self.goal_field is None:
            raise RuntimeError("render() called before reset()")
        sid = self.nav.scene.scene_id
        if self._map_cache is None or self._map_cache[0] != sid:
            self._map_cache = (sid, base_map(self.nav))
        top = draw_map(
            self._map_cache[1],
            self.nav.res,
            self._path,
            self.agent_position,
            self.agent_yaw,
            self.goal_field.goal,
        )
        top = fit_height(top, self._last_rgb.shape[0])
        return np.concatenate([self._last_rgb, top], axis=1)

    def oracle_action(self) -> int:
        """The shortest-path follower's next action (STOP once within the success distance)."""
        from envs.pointnav.oracle import Oracle

        if self._oracle is None:
            self._oracle = Oracle(self)
        return self._oracle.act()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
