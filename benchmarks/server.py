"""Policy server throughput and latency: N concurrent clients vs the same work in-process.

    python benchmarks/server.py --model tiny --clients 1 4 8 --steps 16

For each N: (a) in-process, one episode after another (batch 1: what N separate processes each
owning a model would do per core), (b) in-process with all N as rows of one batch (the ideal), and
(c) N client threads, each with its own RemotePolicy session, against a server in this process (the
model shared with (a) and (b)). Warm-up runs every batch size (a) and (b) use and every bucket size the
server pads to; after it, the JSON reports each server run's decision latency p50 / p99 (as each client
sees it, request to action; each client's first step is not timed: they connect at different times,
then start in step) and how many times jax compiled during that run (counted from jax's
monitoring events: `agent.server.compiles`), plus decisions per second and the server's batch sizes.

Where a tail comes from: each server run also reports the server's own view (act request in -> reply
out, one model call, a row's wait for its batch) and Python's GC pauses during the run. Each N runs once
per `--blas-threads` value (default: the process's BLAS threads as they are, then 1, the server's
default), one right after the other on the same warm model, so before / after share the machine's load.
"""

import argparse
import gc
import json
import os
import sys
import threading
import time

import numpy as np

from agent.benchmarking import device_name
from agent.envs import resolve_env
from agent.server.backends import UIO2Backend, bucket_size
from agent.server.client import RemotePolicy, fetch_json
from agent.server.compiles import compilations
from agent.server.metrics import percentiles
from agent.server.server import ServerConfig, ServerThread
from policies.base import TaskSpec
from policies.registry import load_uio2
from policies.uio2_policy import UIO2Policy


def threadpool_info_brief() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [
        {k: i[k] for k in ("internal_api", "num_threads")}
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]


def workloads(env: str, clients: int, **env_kwargs) -> list[tuple]:
    """(task, observation) per client: each client repeats its first observation (history still grows)."""
    entry = resolve_env(env, **env_kwargs)[0]
    out = []
    for i in range(clients):
        e = entry.make()
        obs, info = e.reset(seed=i)
        out.append((TaskSpec.from_env(e, info, seed=i, env_id=env), obs))
        e.close()
    return out


def in_process(policy: UIO2Policy, work: list[tuple], steps: int, batched: bool) -> dict:
    times = []
    groups = [work] if batched else [[w] for w in work]
    start = time.perf_counter()
    for group in groups:
        policy.reset_batch([t for t, _ in group])
        for _ in range(steps):
            t0 = time.perf_counter()
            policy.act_batch([o for _, o in group])
            times.append(1000 * (time.perf_counter() - t0))
    wall = time.perf_counter() - start
    return {"decisions_per_s": len(work) * steps / wall, "call_latency_ms": percentiles(times)}


class GCPauses:
    """Python's garbage-collector pauses during a run (a stop-the-world pause in any thread of the
    process delays every client thread and the server's event loop alike)."""

    def __init__(self):
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], 1000 * (time.perf_counter() - self._start)))

    def __enter__(self) -> "GCPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> dict:
        ms = [m for _, m in self.pauses]
        generations = {g: sum(1 for k, _ in self.pauses if k == g) for g in (0, 1, 2)}
        total, longest = sum(ms), max(ms, default=0.0)
        return {"count": len(ms), "by_generation": generations, "total_ms": total, "max_ms": longest}


def _tail(window, before: int) -> list[float]:
    """The entries a metrics window (a bounded deque) got since it held `before`."""
    return list(window)[before - len(window) :] if len(window) > before else []


def through_server(server: ServerThread, work: list[tuple], steps: int) -> dict:
    url = server.url
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work) + 1)

    def client(task, obs) -> None:
        try:
            with RemotePolicy(url, timeout=600) as policy:
                policy.reset(task)
                policy.act(obs)  # not timed: clients connect at different times, then start in step
                barrier.wait()
                for _ in range(steps):
                    t0 = time.perf_counter()
                    policy.act(obs)
                    latencies.append(1000 * (time.perf_counter() - t0))
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    compiled = compilations()
    before = fetch_json(url)["batch_size"]["histogram"]
    threads = [threading.Thread(target=client, args=w) for w in work]
    for t in threads:
        t.start()
    barrier.wait()
    metrics = server.server.metrics
    with metrics._lock:  # the server's own view from here on: per act, per batch, per row
        marks = {name: len(getattr(metrics, name)) for name in ("act_ms", "model_ms", "queue_ms")}
    start = time.perf_counter()
    with GCPauses() as pauses:
        for t in threads:
            t.join()
    wall = time.perf_counter() - start
    with metrics._lock:
        seen = {name: percentiles(_tail(getattr(metrics, name), n)) for name, n in marks.items()}
    if errors:
        raise errors[0]
    compiled = compilations() - compiled
    after = fetch_json(url)["batch_size"]["histogram"]
    hist = {int(k): v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    rows, batches = sum(k * v for k, v in hist.items()), sum(hist.values())
    latency = percentiles(latencies)
    return {
        "decisions_per_s": len(work) * steps / wall,
        "call_latency_ms": latency,
        "decision_latency_p50_ms": latency["p50"],
        "decision_latency_p99_ms": latency["p99"],
        "p99_over_p50": latency["p99"] / latency["p50"],
        "compilations_after_warm_up": compiled,
        "mean_batch_size": rows / batches,
        "batch_histogram": dict(sorted(hist.items())),
        # where the time goes: the server's act (request in -> reply out), one model call, a row's wait
        # for its batch; what the client sees beyond act_ms is transport, (de)serialising and threads
        "server_act_ms": seen["act_ms"],
        "model_call_ms": seen["model_ms"],
        "batch_wait_ms": seen["queue_ms"],
        "gc_pauses": pauses.summary(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--env", default="pointnav")
    p.add_argument("--size", type=int, default=128, help="PointNav image width and height")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--steps", type=int, default=16, help="act calls per client")
    p.add_argument(
        "--batch-window-ms",
        type=float,
        default=30.0,
        help="30 ms: N client threads share this process (GIL) and, on a small CPU, its cores",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        nargs="+",
        default=[0, 1],
        help="numpy BLAS threads while each server runs (0: as the process has them); each N runs once per "
        "value, one after the other, so before / after share the machine's load",
    )
    p.add_argument("--max-frames", type=int, default=4)
    p.add_argument("--text-len", type=int, default=96)
    args = p.parse_args()
    env_kwargs = dict(width=args.size, height=args.size) if args.env.startswith("pointnav") else {}
    kwargs = dict(max_frames=args.max_frames, text_len=args.text_len)
    model, vocab, description = load_uio2(args.model)
    policy = UIO2Policy(model, vocab, **kwargs)
    largest = workloads(args.env, bucket_size(max(args.clients)), **env_kwargs)
    sizes = {1, *args.clients} | {bucket_size(b) for b in range(1, max(args.clients) + 1)}
    for b in sorted(sizes):  # warm-up: in-process batch sizes, and the buckets the server pads to
        policy.reset_batch([t for t, _ in largest[:b]])
        policy.act_batch([o for _, o in largest[:b]])
    warm_up_compilations = compilations()
    out = {
        "benchmark": "policy_server",
        "model": description,
        "device": device_name(),
        "env": args.env,
        "env_kwargs": env_kwargs,
        "steps_per_client": args.steps,
        "batch_window_ms": args.batch_window_ms,
        "transport": "websockets + msgpack, 127.0.0.1, server thread in this process",
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": os.getloadavg()[0],
        "warm_up_batch_sizes": sorted(sizes),
        "runs": [],
    }
    backend = UIO2Backend(model, vocab, description, **kwargs)
    for n in args.clients:
        work = largest[:n]
        for blas in args.blas_threads:
            # the limit is process-wide while the server runs: the in-process runs share it
            config = ServerConfig(port=0, batch_window_ms=args.batch_window_ms, blas_threads=blas or None)
            with ServerThread(backend, config) as server:
                run = {
                    "clients": n,
                    "blas_threads": blas or "as is",
                    "blas": threadpool_info_brief(),
                    "load_average_1min": os.getloadavg()[0],
                    "in_process_one_at_a_time": in_process(policy, work, args.steps, batched=False),
                    "in_process_one_batch": in_process(policy, work, args.steps, batched=True),
                    "server": through_server(server, work, args.steps),
                }
            base = run["in_process_one_at_a_time"]["decisions_per_s"]
            run["server_speedup_vs_one_at_a_time"] = run["server"]["decisions_per_s"] / base
            out["runs"].append(run)
            brief = {k: v for k, v in run["server"].items() if "_" in k and not isinstance(v, dict)}
            print(json.dumps({"clients": n, "blas_threads": run["blas_threads"], **brief}), file=sys.stderr)
    out["compilations_after_warm_up"] = compilations() - warm_up_compilations  # server and in-process runs
    print(json.dumps(out, indent=2, default=lambda x: x.item() if isinstance(x, np.generic) else str(x)))


if __name__ == "__main__":
    main()
