"""Procedural shapes and textures: every pool entry builds, renders where expected, and looks distinct."""

import numpy as np

from envs.tabletop.cameras import render
from envs.tabletop.engine import World
from envs.tabletop.shapes import BASE_L1, BASE_NOVEL, DRAGGED_L1, DRAGGED_NOVEL, SHAPES
from envs.tabletop.textures import TEXTURES, texture_file, texture_image


def test_textures_are_distinct_deterministic_and_loadable():
    images = {name: texture_image(tex) for name, tex in TEXTURES.items()}
    assert len(TEXTURES) >= 30
    digests = {img.tobytes() for img in images.values()}
    assert len(digests) == len(images)  # no two textures look the same
    stripe = images["red and yellow stripe"]
    assert len(np.unique(stripe.reshape(-1, 3), axis=0)) == 2
    np.testing.assert_array_equal(texture_image(TEXTURES["granite"]), images["granite"])
    path = texture_file("yellow and blue polka dot")
    with open(path, "rb") as f:
        header = f.read(18)
    assert header[2] == 2 and header[12] == 64  # uncompressed true-colour TGA, 64 px wide


def test_every_shape_builds_and_shows_up_in_the_top_view():
    world = World()
    try:
        for name in (*DRAGGED_L1, *DRAGGED_NOVEL, *BASE_L1, *BASE_NOVEL, "small block", "line"):
            world.reset(with_table=False)
            body = world.add_object(name, "red and yellow stripe", (0.5, 0.0), 0.3)
            _, segm = render(world.client, views=("top",), background=255)
            mask = segm["top"] == body
            rows, cols = np.nonzero(mask)
            assert mask.sum() > 15, name
            # centred on the object's footprint: the top view maps x=0.5 to row 64 and y=0 to column 128
            assert abs(rows.mean() - 64) < 12 and abs(cols.mean() - 128) < 12, name
            lo, hi = world.aabb(body)
            assert -0.002 < lo[2] < 0.01 and hi[2] < 0.06, name  # resting on the table plane, low profile
            assert world.objects[body].shape.radius >= 0.5 * max(hi[0] - lo[0], hi[1] - lo[1]) * 0.7, name
    finally:
        world.close()


def test_symmetry_values_cover_the_pool():
    for name in (*DRAGGED_L1, *DRAGGED_NOVEL, *BASE_L1, *BASE_NOVEL):
        sym = SHAPES[name].symmetry
        assert sym == 0.0 or 0 < sym <= 2 * np.pi + 1e-9, name
