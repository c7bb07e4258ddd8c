"""Decision latency of the UIO2 policy per action (prompting + encode + constrained decode + codec).

    python benchmarks/bench_agent.py --model tiny
    python benchmarks/bench_agent.py --model large --layers 4

Prints JSON: median ms per decision on a PointNav observation and on a tabletop (VIMA) observation,
for 1 env and for a batch of envs (one model call for all of them).
"""

import argparse
import json
import statistics
import time

from flax import nnx

from agent.benchmarking import bench_config, device_name
from agent.envs import resolve_env
from policies.base import TaskSpec
from policies.uio2_policy import UIO2Policy
from uio2_core.model import UIO2Model
from uio2_core.vocab import tiny_vocabulary


def decision_ms(policy: UIO2Policy, env_name: str, batch: int, repeats: int, **env_kwargs) -> dict:
    entry = resolve_env(env_name, **env_kwargs)[0]
    envs = [entry.make() for _ in range(batch)]
    obs, specs = [], []
    for i, env in enumerate(envs):
        o, info = env.reset(seed=i)
        obs.append(o)
        specs.append(TaskSpec.from_env(env, info, seed=i, env_id=env_name))
    policy.reset_batch(specs)
    policy.act_batch(obs)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.act_batch(obs)
        times.append(time.perf_counter() - start)
    for env in envs:
        env.close()
    ms = 1000 * statistics.median(times)
    return {"batch": batch, "ms_per_call": ms, "ms_per_decision": ms / batch,
            "decoded": policy.last_info.get("decoded_text")}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cfg = bench_config(args.model, args.layers)
    model = UIO2Model(cfg, rngs=nnx.Rngs(0), with_vqgan=False)
    policy = UIO2Policy(model, tiny_vocabulary(), max_frames=4, text_len=128)
    out = {"benchmark": "agent_decision", "model": cfg.name, "device": device_name(), "history_frames": 4}
    for env_name, kwargs in (("pointnav", dict(width=128, height=128)), ("tabletop/visual_manipulation", {})):
        out[env_name] = [decision_ms(policy, env_name, b, args.repeats, **kwargs) for b in (1, args.batch)]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
