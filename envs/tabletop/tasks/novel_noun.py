"""07 novel_noun: made-up nouns defined by images ("This is a dax {dragged_obj_1}.")."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.base import NOVEL_WORDS
from envs.tabletop.tasks.visual_manipulation import PutInBaseTask


class NovelNoun(PutInBaseTask):
    """The target and base are referred to only by new words; distractors differ in shape, so the noun (a
    shape) is what identifies the target."""

    name = "novel_noun"
    oracle_max_steps = 3

    @staticmethod
    def distractor_ok(shape: str, texture: str, d_shape: str, d_tex: str) -> bool:
        return shape != d_shape

    def generate(self, world: World, rng: np.random.Generator) -> None:
        self.build(world, rng)
        noun_d, noun_b = (str(w) for w in rng.choice(NOVEL_WORDS, size=2, replace=False))
        world.objects[self.dragged].novel_name = noun_d
        world.objects[self.base].novel_name = noun_b
        self.prompt = (
            f"This is a {noun_d} {{dragged_obj_1}}. This is a {noun_b} {{base_obj}}. "
            f"Put a {noun_d} into a {noun_b}."
        )
        self.placeholders = {
            "dragged_obj_1": self.object_placeholder(world, self.dragged),
            "base_obj": self.object_placeholder(world, self.base),
        }
