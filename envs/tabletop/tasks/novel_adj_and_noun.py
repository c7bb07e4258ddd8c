"""08 novel_adj_and_noun: two made-up nouns defined by images plus a made-up adjective defined by three image
pairs, then "Put the kobar zup into the blicket."."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.tasks.base import NOVEL_WORDS
from envs.tabletop.tasks.novel_adj import NovelAdj


class NovelAdjAndNoun(NovelAdj):
    """As novel_adj, but the target and base are named only by new nouns (held-out L4 family). The extra
    distractor has another shape, so the noun excludes it and the adjective picks target over foil."""

    name = "novel_adj_and_noun"
    oracle_max_steps = 3

    def generate(self, world: World, rng: np.random.Generator) -> None:
        d_shape = str(rng.choice(self.pools.dragged_shapes))
        d_tex = str(rng.choice(self.pools.dragged_textures))
        self.build_pair(world, rng, d_shape, d_tex)
        noun_d, noun_b, adj = (str(w) for w in rng.choice(NOVEL_WORDS, size=3, replace=False))
        self.adjective = adj
        world.objects[self.dragged].novel_name = noun_d
        world.objects[self.foil].novel_name = noun_d
        world.objects[self.base].novel_name = noun_b
        self.placeholders = {
            "dragged_obj_1": self.object_placeholder(world, self.dragged),
            "base_obj": self.object_placeholder(world, self.base),
        }
        self.placeholders["dragged_obj_1"].objects[0].scale = 1.0
        nouns = f"This is a {noun_d} {{dragged_obj_1}}. This is a {noun_b} {{base_obj}}."
        demos = self.demo_text(rng, adj, d_shape)
        self.prompt = f"{nouns} {demos} Put the {adj} {noun_d} into the {noun_b}."
