"""Policy server throughput and latency: N concurrent clients vs the same work in-process.

    python benchmarks/server.py --model tiny --clients 1 2 4 8 --steps 16

For each N: (a) in-process, one episode after another (batch 1: what N separate processes each
owning a model would do per core), (b) in-process with all N as rows of one batch (the ideal), and
(c) N client threads, each with its own RemotePolicy session, against a server in this process (the
model shared with (a) and (b), every batch size compiled beforehand, so no compile is timed). Prints
JSON: decisions per second, per-call latency percentiles, and the server's batch sizes.
"""

import argparse
import json
import sys
import threading
import time

import numpy as np

from agent.benchmarking import device_name
from agent.envs import resolve_env
from agent.server.backends import UIO2Backend
from agent.server.client import RemotePolicy, fetch_json
from agent.server.metrics import percentiles
from agent.server.server import ServerConfig, ServerThread
from policies.base import TaskSpec
from policies.registry import load_uio2
from policies.uio2_policy import UIO2Policy


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


def through_server(url: str, work: list[tuple], steps: int) -> dict:
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work) + 1)

    def client(task, obs) -> None:
        try:
            with RemotePolicy(url, timeout=600) as policy:
                policy.reset(task)
                barrier.wait()
                for _ in range(steps):
                    t0 = time.perf_counter()
                    policy.act(obs)
                    latencies.append(1000 * (time.perf_counter() - t0))
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    before = fetch_json(url)["batch_size"]["histogram"]
    threads = [threading.Thread(target=client, args=w) for w in work]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    after = fetch_json(url)["batch_size"]["histogram"]
    hist = {int(k): v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    rows, batches = sum(k * v for k, v in hist.items()), sum(hist.values())
    return {
        "decisions_per_s": len(work) * steps / wall,
        "call_latency_ms": percentiles(latencies),
        "mean_batch_size": rows / batches,
        "batch_histogram": dict(sorted(hist.items())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--env", default="pointnav")
    p.add_argument("--size", type=int, default=128, help="PointNav image width and height")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=16, help="act calls per client")
    p.add_argument("--batch-window-ms", type=float, default=5.0)
    p.add_argument("--max-frames", type=int, default=4)
    p.add_argument("--text-len", type=int, default=96)
    args = p.parse_args()
    env_kwargs = dict(width=args.size, height=args.size) if args.env.startswith("pointnav") else {}
    kwargs = dict(max_frames=args.max_frames, text_len=args.text_len)
    model, vocab, description = load_uio2(args.model)
    policy = UIO2Policy(model, vocab, **kwargs)
    largest = workloads(args.env, max(args.clients), **env_kwargs)
    for b in range(1, len(largest) + 1):  # compile every batch size the server may form
        policy.reset_batch([t for t, _ in largest[:b]])
        policy.act_batch([o for _, o in largest[:b]])
    out = {
        "benchmark": "policy_server",
        "model": description,
        "device": device_name(),
        "env": args.env,
        "env_kwargs": env_kwargs,
        "steps_per_client": args.steps,
        "batch_window_ms": args.batch_window_ms,
        "transport": "websockets + msgpack, 127.0.0.1, server thread in this process",
        "runs": [],
    }
    backend = UIO2Backend(model, vocab, description, **kwargs)
    config = ServerConfig(port=0, batch_window_ms=args.batch_window_ms)
    with ServerThread(backend, config) as server:
        for n in args.clients:
            work = largest[:n]
            run = {
                "clients": n,
                "in_process_one_at_a_time": in_process(policy, work, args.steps, batched=False),
                "in_process_one_batch": in_process(policy, work, args.steps, batched=True),
                "server": through_server(server.url, work, args.steps),
            }
            base = run["in_process_one_at_a_time"]["decisions_per_s"]
            run["server_speedup_vs_one_at_a_time"] = run["server"]["decisions_per_s"] / base
            out["runs"].append(run)
            print(
                json.dumps({"clients": n, "server_decisions_per_s": run["server"]["decisions_per_s"]}),
                file=sys.stderr,
            )
    print(json.dumps(out, indent=2, default=lambda x: x.item() if isinstance(x, np.generic) else str(x)))


if __name__ == "__main__":
    main()
