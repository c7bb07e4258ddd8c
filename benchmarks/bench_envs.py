"""Environment speed and oracle/random success for both families, as one JSON object.

    python benchmarks/bench_envs.py [--episodes N]

Runs benchmarks/envs_tabletop.py (reset/step medians per task in kinematic and arm modes, oracle
and random success, AsyncVectorEnv steps/s) and benchmarks/envs_pointnav.py (oracle success/SPL,
random, steps/s at 128x128 and 256x256 for one env and an AsyncVectorEnv of 2), each in its own
process, and merges their JSON.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict:
    cmd = [sys.executable, str(HERE / script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout[out.stdout.index("{") :])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--episodes", type=int, default=100, help="tabletop episodes per task; PointNav gets 2x")
    args = p.parse_args()
    print(json.dumps({
        "tabletop": run("envs_tabletop.py", "--episodes", str(args.episodes)),
        "pointnav": run("envs_pointnav.py", "--episodes", str(2 * args.episodes)),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
