"""Image inputs prepared in a compiled computation: the host only stacks the uint8 frames.

`prepare_frames` is `preprocessing.preprocess_image_input` (aspect-preserving antialiased resize,
centred zero padding, CLIP normalisation, patch mask) for a stack of same-sized frames, as two
matrix products per frame (`preprocessing.placement`) on the device. It is the one image
preprocessing of the agent: the policy calls it at every step, `InputBuilder.arrays` (hence
training's examples) calls it for each frame, so training and evaluation see bit-identical inputs.
The host numpy path (`preprocess_image_input`) agrees within float32 rounding
(tests/test_device_preprocessing.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from uio2_core.preprocessing import CLIP_MEAN, CLIP_STD, _as_float_image, placement

_HIGHEST = jax.lax.Precision.HIGHEST  # float32 products on every backend (no TF32 on GPUs)


@functools.partial(jax.jit, static_argnames=("size", "patch"))
def prepare_frames(frames: jax.Array, size: int, patch: int) -> tuple[jax.Array, jax.Array]:
    """frames [N, h, w, 3] (uint8, or float in [0, 1]) -> (CLIP-normalised float32 [N, size, size, 3],
    bool patch masks [N, (size / patch) ** 2]). Compiled once per (N, h, w, size, patch)."""
    n, h, w, _ = frames.shape
    p = placement(h, w, size, patch)
    x = frames.astype(jnp.float32)
    if frames.dtype == jnp.uint8:
        x = x / jnp.float32(255.0)
    wy, wx = jnp.asarray(p.wy), jnp.asarray(p.wx)
    # contract the axis that leaves less work first (as `resize_bilinear` does)
    if size * h * w + size * w * size <= size * w * h + size * h * size:
        x = jnp.einsum("oh,nhwc->nowc", wy, x, precision=_HIGHEST)
        x = jnp.einsum("pw,nowc->nopc", wx, x, precision=_HIGHEST)
    else:
        x = jnp.einsum("pw,nhwc->nhpc", wx, x, precision=_HIGHEST)
        x = jnp.einsum("oh,nhpc->nopc", wy, x, precision=_HIGHEST)
    x = (jnp.clip(x, 0.0, 1.0) - CLIP_MEAN) / CLIP_STD
    return x, jnp.broadcast_to(jnp.asarray(p.mask), (n, p.mask.size))


def checked_frame(image: np.ndarray) -> np.ndarray:
    """An HWC RGB frame as `prepare_frames` takes it: uint8 unchanged, anything else validated as
    `preprocess_image_input` does (clear errors for a wrong shape, dtype or range)."""
    image = np.asarray(image)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 and min(image.shape[:2]) > 0:
        return image
    return _as_float_image(image)


def prepare_frames_np(frames: Sequence[np.ndarray], size: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """`prepare_frames` of frames of any sizes, each alone (N = 1, so a frame's result never depends
    on what else is in the call), back as numpy: [T, size, size, 3], [T, P]."""
    out = [prepare_frames(checked_frame(f)[None], size, patch) for f in frames]
    if not out:
        cells = (size // patch) ** 2
        return np.zeros((0, size, size, 3), np.float32), np.zeros((0, cells), bool)
    return np.concatenate([np.asarray(o[0]) for o in out]), np.concatenate([np.asarray(o[1]) for o in out])
