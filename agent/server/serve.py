"""`uio2 serve`: load the model once and serve it until interrupted.

    python -m agent.server.serve --model tiny --port 8765 [--token T] [--host 0.0.0.0]

The first line on stdout is `listening on ws://HOST:PORT` (with the real port when --port 0), so
scripts can start a server on a free port and read where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rest is imported when serving, so `add_arguments` stays cheap for the CLI
    from agent.server.backends import RowBackend
    from agent.server.server import ServerConfig

log = logging.getLogger(__name__)
SERVABLE = ("uio2", "random")  # the oracle needs the client's env, which a server cannot reach


def build_backend(
    policy: str = "uio2", model: str = "tiny", seed: int = 0, policy_kwargs: dict[str, Any] | None = None
) -> RowBackend:
    """The backend for a policy name; the UIO2 model is loaded here, once."""
    from agent.server.backends import PerSessionBackend, UIO2Backend

    kwargs = dict(policy_kwargs or {})
    if policy == "uio2":
        from policies.registry import load_uio2

        net, vocab, description = load_uio2(model, seed=seed, tokenizer=kwargs.pop("tokenizer", None))
        return UIO2Backend(net, vocab, description, seed=seed, **kwargs)
    if policy == "random":
        from policies.baselines import RandomPolicy

        return PerSessionBackend(lambda: RandomPolicy(seed), "random")
    raise ValueError(f"cannot serve policy {policy!r}; expected one of {', '.join(SERVABLE)}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(backend: RowBackend, config: ServerConfig) -> None:
    from agent.server.server import PolicyServer

    server = PolicyServer(backend, config)
    await server.start()
    print(f"listening on ws://{config.host}:{server.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def serve(
    model: str = "tiny",
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    batch_window_ms: float = 5.0,
    *,
    policy: str = "uio2",
    seed: int = 0,
    policy_kwargs: dict[str, Any] | None = None,
    max_batch: int = 64,
    call_timeout_s: float = 300.0,
    max_message_mb: float = 32.0,
    insecure: bool = False,
    openpi_env: str | None = None,
    openpi_env_kwargs: dict[str, Any] | None = None,
    warmup: int | None = None,
    warmup_env: str | None = None,
    blas_threads: int = 1,
) -> int:
    """Serve until SIGINT / SIGTERM; returns an exit code. `warmup` N: run batch buckets up to N rows
    of `warmup_env` (default: the openpi env) before binding; None: 1 in openpi mode, else none."""
    from agent.server.protocol import Limits
    from agent.server.server import ServerConfig
    from agent.server.warmup import WarmUp

    if not _is_loopback(host) and not token:
        if not insecure:
            raise ValueError(
                f"refusing to serve on {host} without --token: anyone who can reach this port could use "
                "the model (set --token or $UIO2_SERVER_TOKEN, or pass --insecure on a trusted network)"
            )
        log.warning(
            "serving on %s without a token (--insecure): anyone who can reach it can use the model", host
        )
    limits = Limits(max_message_bytes=int(max_message_mb * 2**20))
    openpi = None
    if openpi_env:
        from agent.server.openpi import OpenPIEnv

        openpi = OpenPIEnv.from_env(openpi_env, **(openpi_env_kwargs or {}))
    if blas_threads < 0:
        raise ValueError(f"--blas-threads must be >= 0, got {blas_threads}")
    rows = (1 if openpi_env else 0) if warmup is None else warmup
    if rows < 0:
        raise ValueError(f"--warmup must be >= 0 rows, got {rows}")
    plan = None
    if rows:
        env = warmup_env or openpi_env
        if env is None:
            raise ValueError("--warmup needs --warmup-env ENV (the task to warm up with) outside openpi mode")
        kwargs = (openpi_env_kwargs or {}) if env == openpi_env else {}
        plan = WarmUp.from_env(env, rows, **kwargs)
    config = ServerConfig(
        host=host,
        port=port,
        token=token,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        call_timeout_s=call_timeout_s,
        limits=limits,
        openpi=openpi,
        warmup=plan,
        blas_threads=blas_threads or None,
    )
    backend = build_backend(policy, model, seed, policy_kwargs)
    asyncio.run(_serve(backend, config))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `uio2 serve` flags (shared by the main CLI and `python -m agent.server.serve`)."""
    p.add_argument("--model", default="tiny", help="tiny | large | xl | xxl | checkpoint path")
    p.add_argument("--policy", default="uio2", choices=SERVABLE)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (printed on stdout)")
    p.add_argument(
        "--token",
        default=os.environ.get("UIO2_SERVER_TOKEN"),
        help="shared secret clients must send (Authorization: Bearer); default: $UIO2_SERVER_TOKEN",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --token (anyone who reaches the port can use the model)",
    )
    p.add_argument(
        "--openpi-env",
        default=None,
        help="openpi mode: answer unmodified openpi clients (one connection = one episode) for this ENV "
        "(e.g. pointnav, tabletop/visual_manipulation); see docs/server.md",
    )
    p.add_argument(
        "--openpi-env-kwargs", default="{}", help='JSON for that env, e.g. \'{"width": 128, "height": 128}\''
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="N",
        help="before accepting connections, run batch buckets 1, 2, 4, ... up to N rows of --warmup-env "
        "once, so no client pays a compile (default: 1 in openpi mode, else 0)",
    )
    p.add_argument("--warmup-env", default=None, help="the env to warm up with (default: --openpi-env)")
    p.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="numpy BLAS threads while serving (image preprocessing is many small matrix products; "
        "0: leave as is)",
    )
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="how long a batch gathers requests")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--call-timeout", type=float, default=300.0, help="seconds per act request")
    p.add_argument("--max-message-mb", type=float, default=32.0)
    p.add_argument("--seed", type=int, default=0)


def run_from_args(args: argparse.Namespace, policy_kwargs: dict[str, Any] | None = None) -> int:
    return serve(
        args.model,
        args.host,
        args.port,
        args.token,
        args.batch_window_ms,
        policy=args.policy,
        seed=args.seed,
        policy_kwargs=policy_kwargs,
        max_batch=args.max_batch,
        call_timeout_s=args.call_timeout,
        max_message_mb=args.max_message_mb,
        insecure=args.insecure,
        openpi_env=args.openpi_env,
        openpi_env_kwargs=_json_map(args.openpi_env_kwargs, "--openpi-env-kwargs"),
        warmup=args.warmup,
        warmup_env=args.warmup_env,
        blas_threads=args.blas_threads,
    )


def _json_map(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON map: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON map, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uio2 serve", description=__doc__.split("\n")[0])
    add_arguments(p)
    p.add_argument("--policy-kwargs", default="{}", help="JSON for the policy, e.g. '{\"text_len\": 96}'")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_from_args(args, json.loads(args.policy_kwargs))
    except ValueError as err:
        print(f"uio2 serve: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
