"""Adapter: the real VIMA-Bench (``vima_bench``, old gym API) behind the same Gymnasium spaces and info as our
tabletop suite, so one policy runs on both unchanged.

``vima_bench`` is imported lazily (it needs Python <= 3.12, old gym and torch; see docs/vima_bench.md). The
spaces come from ``envs.tabletop.spaces`` and are declared without it. What the adapter adds, following the
benchmark's own eval scripts: ``env.seed(s)`` before every reset, reset retries with the seed bumped by one
(up to 10, as VIMA's demo does), float32 casting and clipping of actions, ``skip_oracle=True`` for agents
and ``False`` while its own oracle drives (as its oracle scripts), a step limit of ``oracle_max_steps + 2``
(truncation), ``reward = success``, info made plain data like ours (``_plain``), and a private ``TMPDIR`` per
env (the benchmark leaves URDF files there on every reset) removed on ``close()``. pybullet's state is per
process, so one env per process: ``make_vima`` puts further envs in worker processes (``VimaProcessEnv``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import shutil
import tempfile
from enum import Enum
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from envs.tabletop.spaces import VIEWS, action_space, observation_space, sanitize_action

VIMA_TASKS: tuple[str, ...] = (
    "visual_manipulation", "scene_understanding", "rotate", "rearrange", "rearrange_then_restore",
    "novel_adj", "novel_noun", "novel_adj_and_noun", "twist", "follow_motion", "follow_order",
    "sweep_without_exceeding", "sweep_without_touching", "same_texture", "same_shape",
    "manipulate_old_neighbor", "pick_in_order_then_restore",
)  # fmt: skip
PARTITIONS: dict[str, str] = {
    "L1": "placement_generalization", "L2": "combinatorial_generalization",
    "L3": "novel_object_generalization", "L4": "novel_task_generalization",
}  # fmt: skip
RESET_TRIES = 10
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
MISSING_REASON = (
    "vima_bench is not installed (it is not on PyPI and needs Python <= 3.12); "
    "see docs/vima_bench.md to install it from its repository"
)


def vima_available() -> bool:
    """True when ``import vima_bench`` would work (without importing it: that costs seconds)."""
    return importlib.util.find_spec("vima_bench") is not None


def _import_vima():
    try:
        return importlib.import_module("vima_bench")
    except ImportError as err:
        raise ImportError(MISSING_REASON) from err


def _plain(x: Any) -> Any:
    """VIMA-Bench's info values as the plain data our suite's info holds, so they pickle without vima_bench,
    write to JSON and compare: callables (``obj_replace_fn``, partials) dropped, NamedTuples (``SizeRange``)
    as dicts of their fields, Enums (``ProfilePedia.SQUARE_LIKE``) by name as ours (``"square"``), tuples
    of numbers (``texture_color_value``) as float32 arrays like ours, ``None`` (image textures) kept,
    other tuples as lists, arrays copied; dict key order is kept."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if not callable(v)}
    if isinstance(x, Enum):
        return str(x.name).lower().removesuffix("_like")
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a NamedTuple
        return {f: _plain(v) for f, v in zip(x._fields, x, strict=True)}
    if isinstance(x, tuple) and x and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
        return np.asarray(x, np.float32)
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x if not callable(v)]
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _prompt_order(prompt: str, assets: dict[str, Any]) -> dict[str, Any]:
    """Assets keyed in the order their placeholders first appear in the prompt (as ours; VIMA-Bench sorts
    them by name), then any the prompt does not mention."""
    names = [n for n in dict.fromkeys(_PLACEHOLDER.findall(prompt)) if n in assets]
    return {n: assets[n] for n in [*names, *(k for k in assets if k not in names)]}


class VimaBenchEnv(gym.Env):
    """One VIMA-Bench task as a Gymnasium env with our suite's spaces, info keys and oracle interface."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 2}
    _open: ClassVar[int] = 0  # envs open in this process (pybullet's state is per process)

    def __init__(
        self,
        task: str = "visual_manipulation",
        partition: str | None = None,
        task_kwargs: dict[str, Any] | None = None,
        skip_oracle: bool | None = None,
        bonus_steps: int = 2,
        render_mode: str | None = "rgb_array",
        hide_arm_rgb: bool = True,
    ) -> None:
        task = task.removeprefix("vima/")
        if task not in VIMA_TASKS:
            raise ValueError(f"unknown VIMA-Bench task {task!r}; available: {list(VIMA_TASKS)}")
        if VimaBenchEnv._open:
            raise RuntimeError(
                "a VimaBenchEnv is already open in this process: VIMA-Bench keeps its scene in pybullet's "
                "process-global state, so a second env here would silently break the first one's episodes; "
                "close it first, or use make_vima(), which runs further envs in their own processes"
            )
        self.task_name = task
        self.partition = PARTITIONS.get(partition, partition) if partition else None
        self.skip_oracle = skip_oracle
        self.bonus_steps = bonus_steps
        self.render_mode = render_mode
        self.observation_space, self.action_space = self.declared_spaces()
        self._tmpdir = tempfile.mkdtemp(prefix="uio2_vima_")
        self._old_tmp = (os.environ.get("TMPDIR"), tempfile.tempdir)
        os.environ["TMPDIR"] = self._tmpdir  # the benchmark writes URDF templates to gettempdir()
        tempfile.tempdir = self._tmpdir
        vb = _import_vima()
        if task_kwargs is None and self.partition is not None:
            task_kwargs = vb.PARTITION_TO_SPECS["test"][self.partition].get(task) or {}
        self._env = vb.make(
            task,
            task_kwargs=task_kwargs or {},
            modalities=["rgb", "segm"],
            seed=None,
            hide_arm_rgb=hide_arm_rgb,
        )
        VimaBenchEnv._open += 1
        self._counted = True
        self.max_steps = int(self._env.task.oracle_max_steps) + bonus_steps
        self._oracle_driving = False
        self.prompt = ""
        self.prompt_assets: dict[str, Any] = {}
        self.meta_info: dict[str, Any] = {}
        self.elapsed = 0
        self.seed_used: int | None = None
        self._raw_obs: Any = None
        self._obs: dict[str, Any] | None = None
        self._done = True

    @staticmethod
    def declared_spaces() -> tuple[gym.spaces.Dict, gym.spaces.Dict]:
        """(observation, action) spaces, available without vima_bench installed."""
        return observation_space(), action_space()

    @property
    def oracle_max_steps(self) -> int:
        return int(self._env.task.oracle_max_steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        base = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else int(seed)
        last: Exception | None = None
        for k in range(RESET_TRIES):
            try:
                self._env.seed(base + k)
                raw = self._env.reset()
                break
            except Exception as err:  # VIMA's reset wrapper also retries on any error
                last = err
        else:
            raise RuntimeError(f"VIMA-Bench reset failed {RESET_TRIES} times from seed {base}") from last
        self.seed_used = base + k
        self.elapsed = 0
        self._oracle_driving = False
        self._done = False
        self._raw_obs = raw
        self._obs = self._convert_obs(raw)
        prompt, assets = self._env.get_prompt_and_assets()
        self.prompt = str(prompt)
        self.prompt_assets = _prompt_order(self.prompt, _plain(dict(assets)))
        self.meta_info = _plain(dict(self._env.meta_info))
        self.meta_info.update(seed=self.seed_used, task=self.task_name, mode="vima",
                              oracle_max_steps=self.oracle_max_steps, max_steps=self.max_steps)  # fmt: skip
        return self._obs, {
            "prompt": self.prompt,
            "prompt_assets": self.prompt_assets,
            "meta_info": self.meta_info,
        }

    def step(self, action: dict[str, Any]):
        if self._done:
            raise RuntimeError("episode has ended; call reset()")
        act = sanitize_action(action)
        skip = (not self._oracle_driving) if self.skip_oracle is None else self.skip_oracle
        raw, _reward, done, info = self._env.step(act, skip_oracle=skip)
        self.elapsed += 1
        success, failure = bool(info.get("success", False)), bool(info.get("failure", False))
        terminated = bool(done or success or failure)
        truncated = bool(self.elapsed >= self.max_steps and not terminated)
        self._done = terminated or truncated
        self._raw_obs = raw
        self._obs = self._convert_obs(raw)
        out = {"prompt": self.prompt, "success": success, "failure": failure}
        return self._obs, float(success), terminated, truncated, out

    def render(self) -> np.ndarray | None:
        if self.render_mode is None or self._obs is None:
            return None
        return np.ascontiguousarray(self._obs["rgb"]["front"].transpose(1, 2, 0))

    def make_oracle(self, seed: int | None = None) -> VimaOracle:
        """The benchmark's scripted oracle with our interface (``act(obs, info) -> action | None``).

        Until the next reset, steps then update the oracle-only goals (``skip_oracle=False``) as VIMA-Bench's
        own oracle scripts do, so the oracle takes exactly the steps it takes there."""
        self._oracle_driving = True
        return VimaOracle(self)

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if getattr(self, "_counted", False):
            VimaBenchEnv._open -= 1
            self._counted = False
        if env is not None:
            env.close()
        old_env, old_tempdir = self._old_tmp
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env
        tempfile.tempdir = old_tempdir
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    @staticmethod
    def _convert_obs(raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "rgb": {v: np.asarray(raw["rgb"][v], dtype=np.uint8) for v in VIEWS},
            "segm": {v: np.asarray(raw["segm"][v], dtype=np.uint8) for v in VIEWS},
            "ee": int(np.asarray(raw["ee"]).item()),
        }


class VimaOracle:
    """Wraps ``env.task.oracle(env)``; returns float32, clipped actions, or None when it cannot act."""

    def __init__(self, env: VimaBenchEnv) -> None:
        self.env = env
        self._oracle = env._env.task.oracle(env._env)

    def act(self, obs: Any = None, info: Any = None) -> dict[str, np.ndarray] | None:
        if not self.env._env.task.goals:
            # every goal done (the episode is over, e.g. an idle row of a --num-envs batch): VIMA-Bench's
            # oracle would index an empty goal list
            return None
        action = self._oracle.act(self.env._raw_obs)
        if action is None:
            return None
        return sanitize_action(action)


def _serve(conn: Any, task: str, kwargs: dict[str, Any]) -> None:
    """The child side of ``VimaProcessEnv``: one ``VimaBenchEnv``, driven by (command, args) messages."""
    env: VimaBenchEnv | None = None
    oracle: VimaOracle | None = None
    try:
        env = VimaBenchEnv(task=task, **kwargs)
        conn.send((True, {k: getattr(env, k) for k in _MIRRORED}))
        while True:
            cmd, args = conn.recv()
            try:
                if cmd == "close":
                    break
                if cmd == "reset":
                    out: Any = env.reset(**args)
                elif cmd == "step":
                    out = env.step(args)
                elif cmd == "render":
                    out = env.render()
                elif cmd == "make_oracle":
                    oracle, out = env.make_oracle(args), None
                elif cmd == "oracle_act":
                    out = oracle.act() if oracle is not None else None
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send((True, (out, {k: getattr(env, k) for k in _MIRRORED})))
            except Exception as err:
                conn.send((False, _picklable(err)))
    except Exception as err:
        conn.send((False, _picklable(err)))
    finally:
        if env is not None:
            env.close()
        conn.close()


def _picklable(err: Exception) -> Exception:
    import pickle

    try:
        pickle.dumps(err)
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


_MIRRORED = ("task_name", "partition", "max_steps", "prompt", "prompt_assets", "meta_info", "elapsed",
             "seed_used", "oracle_max_steps")  # fmt: skip


class VimaProcessEnv(gym.Env):
    """A ``VimaBenchEnv`` in its own (spawned) process: VIMA-Bench keeps its scene in pybullet's
    process-global state, so K envs side by side need K processes. Same spaces, info, attributes and
    oracle interface as the in-process env; observations and actions travel through a pipe."""

    metadata: ClassVar[dict[str, Any]] = VimaBenchEnv.metadata

    def __init__(self, task: str = "visual_manipulation", **kwargs: Any) -> None:
        import multiprocessing as mp

        self.observation_space, self.action_space = VimaBenchEnv.declared_spaces()
        self.render_mode = kwargs.get("render_mode", "rgb_array")
        ctx = mp.get_context("spawn")  # never fork a process that may hold JAX or pybullet threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, task, kwargs), daemon=True)
        self._proc.start()
        child.close()
        self._mirror(self._recv())

    def _recv(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except EOFError as err:
            raise RuntimeError(f"the VIMA-Bench worker process exited (code {self._proc.exitcode})") from err
        if not ok:
            raise value
        return value

    def _mirror(self, attrs: dict[str, Any]) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)

    def _send(self, cmd: str, args: Any = None) -> None:
        if getattr(self, "_proc", None) is None:
            raise RuntimeError("the env is closed")
        pending = getattr(self, "_pending", None)
        if pending is not None:
            raise RuntimeError(f"a {pending} is still in flight: call {pending}_wait() first")
        self._conn.send((cmd, args))
        self._pending = cmd

    def _finish(self, cmd: str) -> Any:
        if getattr(self, "_pending", None) != cmd:
            raise RuntimeError(f"no {cmd} in flight: call {cmd}_async() first")
        self._pending = None
        out, attrs = self._recv()
        self._mirror(attrs)
        return out

    def _call(self, cmd: str, args: Any = None) -> Any:
        self._send(cmd, args)
        return self._finish(cmd)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def reset_async(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Start a reset in the worker and return at once (``reset_wait`` collects it): K workers then reset
        at the same time."""
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        self._send("reset", {"seed": seed, "options": options})

    def reset_wait(self):
        return self._finish("reset")

    def step(self, action: dict[str, Any]):
        self.step_async(action)
        return self.step_wait()

    def step_async(self, action: dict[str, Any]) -> None:
        """Send the action and return at once (``step_wait`` collects the result): the rollout sends every
        slot's action before it waits for any, so K workers step at the same time."""
        self._send("step", sanitize_action(action))

    def step_wait(self):
        return self._finish("step")

    def render(self) -> np.ndarray | None:
        return self._call("render")

    def make_oracle(self, seed: int | None = None) -> _RemoteOracle:
        self._call("make_oracle", seed)
        return _RemoteOracle(self)

    def close(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is None:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(("close", None))
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        self._conn.close()


class _RemoteOracle:
    def __init__(self, env: VimaProcessEnv) -> None:
        self.env = env

    def act(self, obs: Any = None, info: Any = None) -> dict[str, np.ndarray] | None:
        return self.env._call("oracle_act")


def make_vima(task: str, *, isolate: bool | None = None, **kwargs: Any) -> VimaBenchEnv | VimaProcessEnv:
    """Build the adapter for ``task`` (``vima/<task>`` accepted); kwargs go to ``VimaBenchEnv``.

    ``isolate``: run the env in its own process (``VimaProcessEnv``); by default only when another
    ``VimaBenchEnv`` is already open in this process (``--num-envs K`` then gets K working envs)."""
    if isolate is None:
        isolate = VimaBenchEnv._open > 0
    return VimaProcessEnv(task=task, **kwargs) if isolate else VimaBenchEnv(task=task, **kwargs)


def level_tasks(level: str) -> list[str]:
    """The tasks of VIMA-Bench's evaluation partition ``L1``..``L4`` (its own ``PARTITION_TO_SPECS``)."""
    if level not in PARTITIONS:
        raise ValueError(f"unknown VIMA-Bench level {level!r}; available: {', '.join(PARTITIONS)}")
    return list(_import_vima().PARTITION_TO_SPECS["test"][PARTITIONS[level]])


def vima_env_id(task: str) -> str:
    return f"uio2/vima-{task}-v0"


def register_vima_envs() -> list[str]:
    """Register ``uio2/vima-<task>-v0`` for the 17 tasks (idempotent; vima_bench needed at make time)."""
    ids = []
    for task in VIMA_TASKS:
        eid = vima_env_id(task)
        if eid not in gym.registry:
            gym.register(id=eid, entry_point="envs.vima_bench:VimaBenchEnv", kwargs={"task": task})
        ids.append(eid)
    return ids
