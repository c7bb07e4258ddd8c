"""15 same_shape: "Put all objects with the same profile as {base_obj} into it." (class SameProfile)."""

from __future__ import annotations

import numpy as np

from envs.tabletop.shapes import SHAPES
from envs.tabletop.tasks.same_texture import SameTexture


def _profile(shape: str) -> str:
    return SHAPES[shape].profile


class SameShape(SameTexture):
    """Objects whose footprint profile (square, circle, ...) matches the base's go in; textures vary freely.
    When the level's dragged pool has no shape of the base's profile (L3's held-out shapes against a
    square pallet), matching objects come from the rest of the movable pool. Tolerance 0.125 m."""

    name = "same_shape"
    oracle_max_steps = 4

    def _matches(self, profile: str) -> list[str]:
        in_pool = [s for s in self.pools.dragged_shapes if _profile(s) == profile]
        if in_pool:
            return in_pool
        return [n for n, s in SHAPES.items() if not s.fixed and s.profile == profile and n != "small block"]

    def draw_base(self, rng: np.random.Generator) -> tuple[str, str]:
        bases = [b for b in self.pools.base_shapes if self._matches(_profile(b))]
        if not bases:
            raise ValueError("no base shape whose profile a movable shape shares")
        return str(rng.choice(bases)), str(rng.choice(self.pools.base_textures))

    def draw_match(self, rng: np.random.Generator, b_shape: str, b_tex: str) -> tuple[str, str]:
        return str(rng.choice(self._matches(_profile(b_shape)))), str(rng.choice(self.pools.dragged_textures))

    def draw_other(self, rng: np.random.Generator, b_shape: str, b_tex: str) -> tuple[str, str]:
        others = [s for s in self.pools.dragged_shapes if _profile(s) != _profile(b_shape)]
        return str(rng.choice(others)), str(rng.choice(self.pools.dragged_textures))

    def prompt_text(self) -> str:
        return "Put all objects with the same profile as {base_obj} into it."
