"""Prompt assets rendered like the benchmark's: object placeholders alone on white in a separate client
(object id 0, background 255), scene placeholders as a full workspace (plane 0, table 1, objects from 2)."""

from __future__ import annotations

import math

import numpy as np

from envs.tabletop.cameras import render
from envs.tabletop.engine import World
from envs.tabletop.tasks.base import Placeholder

OBJECT_POSE = (np.array([0.5, 0.0]), math.pi / 2)


class AssetRenderer:
    """Owns a second pybullet client, reused across resets (creating clients is the slow part)."""

    def __init__(self) -> None:
        self.world = World()

    def render(self, ph: Placeholder) -> dict:
        w = self.world
        if ph.kind == "object":
            w.reset(with_table=False)
            o = ph.objects[0]
            w.add_object(o.shape, o.texture, OBJECT_POSE[0], OBJECT_POSE[1], scale=o.scale, fixed=True)
            rgb, segm = render(w.client, background=255)
            info: object = {"obj_id": 0, "obj_name": o.shape, "obj_color": o.texture}
        else:
            w.reset(with_table=True)
            info = []
            for o in ph.objects:
                body = w.add_object(o.shape, o.texture, o.xy, o.yaw, scale=o.scale, fixed=True)
                info.append({"obj_id": body, "obj_name": o.shape, "obj_color": o.texture})
            rgb, segm = render(w.client)
        return {"rgb": rgb, "segm": {**segm, "obj_info": info}, "placeholder_type": ph.kind}

    def close(self) -> None:
        self.world.close()
