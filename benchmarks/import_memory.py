"""Peak memory and time to import a full-size official `.bin` (default `large`, 4.3 GB fp32).

    python benchmarks/import_memory.py                 # large, VQ-GANs included
    python benchmarks/import_memory.py --no-vqgan      # pruned, as a text-only agent loads it

The checkpoint is synthetic: generated on the fly from the shapes of the reference schema, written
chunk by chunk through a scratch memmap into a temporary directory, then imported in a fresh
process that samples its own memory. Prints one JSON object. `peak_rss` counts file-backed pages
of the memory-mapped input too; `peak_anon` is the memory the import itself allocated.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GB = 1024**3


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out


def child(path: str, with_vqgan: bool) -> None:
    """Runs in the fresh process: import and report memory as JSON on stdout."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from uio2_core.checkpoints.hf import import_hf
    from uio2_core.model import parameter_counts

    jax.numpy.zeros(1).block_until_ready()
    base = _status()
    peak = {"anon": base["RssAnon"], "rss": base["VmRSS"]}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            s = _status()
            peak["anon"] = max(peak["anon"], s["RssAnon"])
            peak["rss"] = max(peak["rss"], s["VmRSS"])
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    model = import_hf(path, with_vqgan=with_vqgan)
    jax.block_until_ready(jax.tree.leaves(jax.tree.map(lambda x: x, __import__("flax").nnx.state(model))))
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    end = _status()
    counts = parameter_counts(model)
    print(
        json.dumps(
            {
                "import_s": round(seconds, 2),
                "params": counts["total"],
                "param_gb": round(counts["total"] * 4 / GB, 3),
                "baseline_rss_gb": round(base["VmRSS"] / GB, 3),
                "baseline_anon_gb": round(base["RssAnon"] / GB, 3),
                "peak_rss_gb": round(max(peak["rss"], end["VmHWM"]) / GB, 3),
                "peak_anon_gb": round(peak["anon"] / GB, 3),
                "final_anon_gb": round(end["RssAnon"] / GB, 3),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="large")
    p.add_argument("--no-vqgan", action="store_true")
    p.add_argument("--dir", default=None, help="where to write the temporary checkpoint")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, not args.no_vqgan)
        return

    from uio2_core.checkpoints.hf import BIN_FILE, CONFIG_FILE
    from uio2_core.checkpoints.official_config import official_dict
    from uio2_core.checkpoints.synthetic import write_synthetic_bin
    from uio2_core.config import get_config

    cfg = get_config(args.model)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp) / f"uio2-{args.model}"
        d.mkdir()
        start = time.perf_counter()
        write_synthetic_bin(cfg, d / BIN_FILE)
        (d / CONFIG_FILE).write_text(json.dumps(official_dict(cfg)))
        generate_s = time.perf_counter() - start
        cmd = [sys.executable, __file__, "--child", str(d)] + (["--no-vqgan"] if args.no_vqgan else [])
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode:
            raise SystemExit(result.stderr[-4000:])
        report = json.loads(result.stdout.strip().splitlines()[-1])
        file_gb = (d / BIN_FILE).stat().st_size / GB
    report = {
        "benchmark": "import_memory",
        "model": args.model,
        "with_vqgan": not args.no_vqgan,
        "file_gb": round(file_gb, 3),
        "generate_s": round(generate_s, 1),
        **report,
    }
    report["peak_anon_over_params"] = round(report["peak_anon_gb"] / report["param_gb"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
