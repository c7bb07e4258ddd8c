"""06 novel_adj: a made-up adjective defined by three image pairs ("{demo_blicker_obj_1} is kobar than
{demo_less_blicker_obj_1}."), then "Put the kobar {dragged_obj} into the {base_obj}."."""

from __future__ import annotations

import numpy as np

from envs.tabletop.engine import World
from envs.tabletop.shapes import SHAPES
from envs.tabletop.tasks.base import NOVEL_WORDS, Placeholder, SceneObject
from envs.tabletop.tasks.visual_manipulation import PutInBaseTask

BIG, SMALL = 1.0, 0.6  # the two sizes the adjective contrasts (object scale)
N_DEMOS = 3


class NovelAdj(PutInBaseTask):
    """The adjective means "larger" or "smaller" (drawn per episode) and is shown only through the demos.
    The scene holds the target and a foil of the same shape and texture at the other size, so only the
    adjective tells them apart. Failure: the foil (or any distractor) in the base, or an object leaves."""

    name = "novel_adj"
    oracle_max_steps = 3

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.adjective = ""
        self.means_larger = True
        self.foil = -1

    def build_pair(self, world: World, rng: np.random.Generator, d_shape: str, d_tex: str) -> None:
        """Base, target and foil (same look, other size), plus 0-1 distractor of another shape."""
        pools = self.pools
        self.means_larger = bool(rng.integers(2))
        t_scale, f_scale = (BIG, SMALL) if self.means_larger else (SMALL, BIG)
        b_shape = str(rng.choice(pools.base_shapes))
        b_tex = str(rng.choice(pools.base_textures))
        self.base = self.add(world, rng, b_shape, b_tex, "base")
        self.dragged = self._add_scaled(world, rng, d_shape, d_tex, t_scale, "dragged")
        self.foil = self._add_scaled(world, rng, d_shape, d_tex, f_scale, "distractor")
        self.distractors = [self.foil]
        for _ in range(int(rng.integers(0, 2))):
            s = str(rng.choice([x for x in pools.dragged_shapes if x != d_shape]))
            t = str(rng.choice(pools.dragged_textures))
            self.distractors.append(self.add(world, rng, s, t, "distractor"))

    @staticmethod
    def _add_scaled(
        world: World, rng: np.random.Generator, shape: str, tex: str, scale: float, role: str
    ) -> int:
        xy = world.sample_free_xy(rng, SHAPES[shape].radius * scale)
        return world.add_object(shape, tex, xy, float(rng.uniform(0, 2 * np.pi)), scale=scale, role=role)

    def demo_text(self, rng: np.random.Generator, word: str, exclude: str) -> str:
        """Three pairs of other shapes showing the adjective; fills the demo placeholders."""
        pools = self.pools
        shapes = [s for s in pools.dragged_shapes if s != exclude] or list(pools.dragged_shapes)
        parts = []
        for i in range(1, N_DEMOS + 1):
            s = str(rng.choice(shapes))
            t = str(rng.choice(pools.dragged_textures))
            more, less = (BIG, SMALL) if self.means_larger else (SMALL, BIG)
            self.placeholders[f"demo_blicker_obj_{i}"] = Placeholder(
                "object", [SceneObject(s, t, np.zeros(2), 0.0, more)]
            )
            self.placeholders[f"demo_less_blicker_obj_{i}"] = Placeholder(
                "object", [SceneObject(s, t, np.zeros(2), 0.0, less)]
            )
            parts.append(f"{{demo_blicker_obj_{i}}} is {word} than {{demo_less_blicker_obj_{i}}}.")
        return " ".join(parts)

    def generate(self, world: World, rng: np.random.Generator) -> None:
        d_shape = str(rng.choice(self.pools.dragged_shapes))
        d_tex = str(rng.choice(self.pools.dragged_textures))
        self.build_pair(world, rng, d_shape, d_tex)
        self.adjective = str(rng.choice(NOVEL_WORDS))
        self.placeholders = {}
        demos = self.demo_text(rng, self.adjective, d_shape)
        self.prompt = f"{demos} Put the {self.adjective} {{dragged_obj}} into the {{base_obj}}."
        self.placeholders["dragged_obj"] = Placeholder(
            "object", [SceneObject(d_shape, d_tex, np.zeros(2), 0.0)]
        )
        self.placeholders["base_obj"] = self.object_placeholder(world, self.base)
