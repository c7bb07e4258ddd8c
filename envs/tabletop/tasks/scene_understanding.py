"""02 scene_understanding: textures named in words, the objects identified in a scene image."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.visual_manipulation import PutInBaseTask


class SceneUnderstanding(PutInBaseTask):
    """ "Put the {texture} object in {scene} into the {texture} object." Every texture in the scene is unique,
    so the words pick exactly one dragged object and one base."""

    name = "scene_understanding"
    oracle_max_steps = 3

    def generate(self, world: World, rng: np.random.Generator) -> None:
        self.build(world, rng, distinct_textures=True)
        d_tex = world.objects[self.dragged].texture
        b_tex = world.objects[self.base].texture
        self.prompt = f"Put the {d_tex} object in {{scene}} into the {b_tex} object."
        bodies = [self.base, self.dragged, *self.distractors]
        self.placeholders = {"scene": self.scene_placeholder(world, bodies)}
