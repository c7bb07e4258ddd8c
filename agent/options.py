"""`--env.NAME=VALUE` and `--policy.NAME=VALUE`: typed, validated options parsed with tyro.

Each env's options are a frozen dataclass made from its constructor's signature (so the flags follow
the env's own arguments and defaults, and never drift from them); the UIO2 policy's are
`policies.registry.UIO2Options`. tyro (the library openpi's configs use) maps the dotted flags onto them,
converts and checks each value by its type, and lists them in `uio2 eval --env ENV --help`; its errors
are turned into one line that names the flag (`OptionError`).

Today's spellings keep working: `--env.width=64`, `--env.width 64`, JSON-style `true`/`false`/`null` and
`["a", "b"]` lists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import re
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from uio2_errors import OptionError

# constructor arguments that are not user options: set by the ENV string, --level or the runtime
_NOT_OPTIONS = {"self", "task", "config_path", "pools", "render_mode", "habitat_env", "level"}
_SIMPLE = {"int": int, "float": float, "bool": bool, "str": str, "Path": str}


def _split_union(annotation: str) -> list[str]:
    """`str | list[A | B] | None` -> ["str", "list[A | B]", "None"] (bars inside brackets kept)."""
    parts, depth, current = [], 0, ""
    for ch in annotation:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()]


def _option_type(annotation: Any, default: Any) -> Any | None:
    """A command-line type for a constructor annotation (a string under PEP 563), or None when the
    argument takes objects only code can give (then it is not a flag)."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    parts = _split_union(annotation)
    optional = "None" in parts or default is None
    members = [p for p in parts if p != "None"]
    seq = [p for p in members if re.fullmatch(r"(list|tuple)\[str(, \.\.\.)?\]", p)]
    simple = [_SIMPLE[p] for p in members if p in _SIMPLE]
    if seq and not simple:
        base: Any = tuple[str, ...]
    elif bool in simple:
        base = bool
    elif float in simple:
        base = float
    elif int in simple:
        base = int
    elif str in simple:
        base = str  # paths, names, or the path form of an argument that also takes objects
    elif isinstance(default, bool | int | float | str) and not members:
        base = type(default)
    else:
        return None
    return base | None if optional else base


def options_from_signature(name: str, *functions: Callable) -> type:
    """A frozen dataclass of the user-settable arguments of `functions` (first one wins a name)."""
    fields, seen = [], set()
    for fn in functions:
        for p in inspect.signature(fn).parameters.values():
            if p.name in _NOT_OPTIONS or p.name in seen or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = None if p.default is inspect.Parameter.empty else p.default
            tp = _option_type(p.annotation, default)
            if tp is None:
                continue
            if isinstance(default, list):
                default = tuple(default)
            seen.add(p.name)
            fields.append((p.name, tp, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(name, fields, frozen=True)


@cache
def env_options(env: str) -> type:
    """The options dataclass of an ENV string (its family: every tabletop task shares one)."""
    family = env.partition("/")[0]
    if env == "pointnav":
        from envs.pointnav.env import PointNavEnv

        return options_from_signature("PointNavOptions", PointNavEnv.__init__)
    if env == "pointnav-audio":
        from envs.pointnav.audio_env import PointNavAudioEnv
        from envs.pointnav.env import PointNavEnv

        return options_from_signature("PointNavAudioOptions", PointNavAudioEnv.__init__, PointNavEnv.__init__)
    if family == "tabletop":
        from envs.tabletop.env import TabletopEnv

        return options_from_signature("TabletopOptions", TabletopEnv.__init__)
    if family == "vima":
        from envs.vima_bench import VimaBenchEnv

        return options_from_signature("VimaBenchOptions", VimaBenchEnv.__init__)
    if family == "habitat":
        from envs.habitat import HabitatPointNavEnv

        return options_from_signature("HabitatOptions", HabitatPointNavEnv.__init__)
    return dataclasses.make_dataclass("NoEnvOptions", [], frozen=True)


@cache
def policy_options(policy: str) -> type:
    """The options dataclass of a `--policy` value."""
    if policy == "uio2":
        from policies.registry import UIO2Options

        return UIO2Options
    if policy.startswith(("remote://", "ws://", "wss://")):
        from agent.server.client import RemotePolicy

        return options_from_signature("RemoteOptions", RemotePolicy.__init__)
    return dataclasses.make_dataclass("NoPolicyOptions", [], frozen=True)


def _bundle(env_cls: type, policy_cls: type) -> type:
    return dataclasses.make_dataclass(
        "Options",
        [("env", env_cls, dataclasses.field(default_factory=env_cls)),
         ("policy", policy_cls, dataclasses.field(default_factory=policy_cls))],
        frozen=True,
    )  # fmt: skip


def _field_types(cls: type) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def _normalise(extra: Sequence[str], types: dict[str, dict[str, Any]]) -> list[str]:
    """Today's spellings -> tyro's: `--a.b=v` split, JSON booleans/null/lists rewritten."""
    out: list[str] = []
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise OptionError(f"unexpected argument {flag!r} (options: --env.NAME=V, --policy.NAME=V)")
        key, eq, value = flag[2:].partition("=")
        if not eq:
            if not items or items[0].startswith("--"):
                raise OptionError(f"{flag} needs a value")
            value = items.pop(0)
        group, _, name = key.partition(".")
        if group not in types:
            raise OptionError(f"unknown option group in {flag!r}; use --env.NAME or --policy.NAME")
        tp = types[group].get(name.replace("-", "_"))
        if tp is None:
            known = ", ".join(f"--{group}.{n}" for n in types[group]) or "none"
            raise OptionError(f"unknown option --{group}.{name} (this {group} takes: {known})")
        values = [value]
        text = value.strip().lower()
        if text in ("null", "none"):
            values = ["None"]
        elif bool in (tp, *getattr(tp, "__args__", ())):
            values = [{"true": "True", "1": "True", "yes": "True", "false": "False", "0": "False",
                       "no": "False"}.get(text, value)]  # fmt: skip
        elif value.startswith("[") and "tuple" in str(tp):
            try:
                values = [str(v) for v in json.loads(value)]
            except json.JSONDecodeError as err:
                raise OptionError(f"--{group}.{name}: {value!r} is not a JSON list ({err})") from err
        out += [f"--{group}.{name.replace('-', '_')}", *values]
    return out


def _tyro_message(text: str) -> str:
    """tyro's boxed error -> its core sentence(s) on one line."""
    lines = [ln.strip(" │─-╭╮╰╯┃━") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    body: list[str] = []
    for ln in lines[1:] if len(lines) > 1 else lines:
        if ln.startswith(("Argument helptext", "For full helptext", "usage:")):
            break
        body.append(ln)
    return " ".join(" ".join(body).split())


def parse_options(
    extra: Sequence[str], env: str | None, policy: str | None, prog: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(env kwargs, policy kwargs) that the user set, typed and checked; `OptionError` otherwise."""
    import tyro

    env_cls = env_options(env or "")
    policy_cls = policy_options(policy or "")
    types = {"env": _field_types(env_cls), "policy": _field_types(policy_cls)}
    args = _normalise(extra, types)
    if not args:
        return {}, {}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
            parsed = tyro.cli(
                tyro.conf.FlagConversionOff[_bundle(env_cls, policy_cls)], args=args, prog=prog,
                use_underscores=True,
            )  # fmt: skip
    except SystemExit as exit_:
        raise OptionError(f"{_tyro_message(err.getvalue())} (options: {prog} --help)") from exit_
    given = {a[2:] for a in args if a.startswith("--")}
    pick = lambda group, obj: {  # noqa: E731
        f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f"{group}.{f.name}" in given
    }
    return pick("env", parsed.env), pick("policy", parsed.policy)


def options_help(env: str | None, policy: str | None, prog: str) -> str:
    """tyro's listing of the env's and the policy's options (for `--help`; `policy=None`: none)."""
    import tyro

    out = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):
        bundle = _bundle(env_options(env or ""), policy_options(policy or ""))
        tyro.cli(tyro.conf.FlagConversionOff[bundle], args=["--help"], prog=prog, use_underscores=True)
    return out.getvalue()


__all__ = ["env_options", "options_from_signature", "options_help", "parse_options", "policy_options"]
