"""Measure our tabletop scenes the way tests/data/vima_scenes/figures.json measured the real VIMA-Bench's, and
print both side by side as the markdown tables of docs/tabletop.md.

Every task is reset on seeds 0-2 (kinematic mode); per scene the top and front images and segmentation give
the table's box and colour, the background's colour and pixel count, each task object's extent (the larger
side of its top-view mask's bounding box, px) and the sweep tasks' boundary and bar boxes.

    PYTHONPATH=$PWD python scripts/tabletop_scene_figures.py [--seeds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from envs.tabletop import TASK_NAMES, make_tabletop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIMA = os.path.join(ROOT, "tests", "data", "vima_scenes", "figures.json")


def _bbox(mask: np.ndarray) -> list[int] | None:
    r, c = np.nonzero(mask)
    return [int(r.min()), int(r.max()), int(c.min()), int(c.max())] if len(r) else None


def measure(seeds: int) -> dict:
    """Per task: table box per view, colours, median object extent, sweep boxes; per object: extents."""
    out: dict = {"tasks": {}, "objects": {}}
    for task in TASK_NAMES:
        env = make_tabletop(task)
        ext, bounds, bars, first = [], [], [], None
        try:
            for seed in range(seeds):
                obs, info = env.reset(seed=seed)
                seg, rgb = obs["segm"]["top"], obs["rgb"]["top"].transpose(1, 2, 0)
                if first is None:
                    first = {
                        "table_bbox": {v: _bbox(obs["segm"][v] == 1) for v in ("top", "front")},
                        "table_rgb": np.median(rgb[seg == 1], 0).astype(int).tolist(),
                        "background_rgb": np.median(rgb[seg == 0], 0).astype(int).tolist(),
                        "background_px_top": int((seg == 0).sum()),
                    }
                for oid, o in info["meta_info"]["obj_id_to_info"].items():
                    b = _bbox(seg == int(oid))
                    if b is None:
                        continue
                    hw = [b[1] - b[0] + 1, b[3] - b[2] + 1]
                    if o["obj_name"] == "three-sided rectangle":
                        bounds.append(b + hw)
                    elif o["obj_name"] == "line":
                        bars.append(b + hw)
                    else:
                        ext.append(max(hw))
                        out["objects"].setdefault(o["obj_name"], []).append(max(hw))
        finally:
            env.close()
        row = dict(first or {}, extent_px=float(np.median(ext)))
        if bounds:
            med = [int(v) for v in np.median(np.asarray(bounds), 0)]
            row["boundary_bbox"], row["boundary_hw"] = med[:4], med[4:]
            med = [int(v) for v in np.median(np.asarray(bars), 0)]
            row["bar_bbox"], row["bar_hw"] = med[:4], med[4:]
        out["tasks"][task] = row
    out["objects"] = {
        k: {"median": float(np.median(v)), "n": len(v)} for k, v in sorted(out["objects"].items())
    }
    return out


def _box(b: list[int]) -> str:
    return f"{b[0]}-{b[1]}, {b[2]}-{b[3]}"


def _hw(hw: list[int]) -> str:
    return f"{hw[0]} x {hw[1]}"


def tables(ours: dict, vima: dict) -> str:
    """The three tables of docs/tabletop.md: per task family, per sweep task, per object."""
    lines = [
        "| task family | objects' extent px, median: ours / VIMA | VIMA / ours | table box top; front: ours"
        " (VIMA) | table RGB: ours / VIMA | background RGB: ours / VIMA | background px, top: ours / VIMA |",
        "|---|---|---|---|---|---|---|",
    ]
    vt = vima["table_bbox"]
    for task, o in ours["tasks"].items():
        v, tb = vima["tasks"][task], o["table_bbox"]
        lines.append(
            f"| {task} | {o['extent_px']:.0f} / {v['extent_px']:.0f} | "
            f"{v['extent_px'] / o['extent_px']:.2f} | "
            f"{_box(tb['top'])}; {_box(tb['front'])} ({_box(vt['top'])}; {_box(vt['front'])}) | "
            f"{tuple(o['table_rgb'])} / {tuple(v['table_rgb'])} | "
            f"{tuple(o['background_rgb'])} / {tuple(v['background_rgb'])} | "
            f"{o['background_px_top']} / {v['background_px_top']} |"
        )
    lines += [
        "",
        "| sweep task (top view, median over seeds) | boundary rows, cols: ours / VIMA | boundary h x w px:"
        " ours / VIMA | bar rows, cols: ours / VIMA | bar h x w px: ours / VIMA |",
        "|---|---|---|---|---|",
    ]
    for task, v in vima["sweep"].items():
        o = ours["tasks"][task]
        lines.append(
            f"| {task} | {_box(o['boundary_bbox'])} / {_box(v['boundary_bbox'])} | "
            f"{_hw(o['boundary_hw'])} / {_hw(v['boundary_hw'])} | "
            f"{_box(o['bar_bbox'])} / {_box(v['bar_bbox'])} | "
            f"{_hw(o['bar_hw'])} / {_hw(v['bar_hw'])} |"
        )
    lines += [
        "",
        "| object | ours px (median, n) | VIMA-Bench px (median, n) | VIMA / ours |",
        "|---|---|---|---|",
    ]
    for name, v in vima["object_extent_px"].items():
        o = ours["objects"].get(name)
        if o is not None:
            ratio = v["median"] / o["median"]
            lines.append(
                f"| {name} | {o['median']:.0f} ({o['n']}) | {v['median']:.0f} ({v['n']}) | {ratio:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", help="also write our figures here")
    args = ap.parse_args()
    ours = measure(args.seeds)
    with open(VIMA) as f:
        vima = json.load(f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ours, f, indent=1)
    print(tables(ours, vima))


if __name__ == "__main__":
    main()
