"""`sensor_msgs/Image` and `CompressedImage` <-> numpy, without cv_bridge (not pip-installable).

Duck-typed on the message field names, so the same code converts rclpy messages on the robot,
rosbags messages in the bag converter and plain objects in tests. Every malformed message raises
`ImageError` naming the field; the node logs and drops it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

# encoding -> (channels, order of the RGB channels in the message, has alpha)
ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
    "8UC1": (1, (0, 0, 0)),
    "8UC3": (3, (0, 1, 2)),  # OpenCV's untyped 3-channel: assume the driver wrote RGB
}


class ImageError(ValueError):
    """A camera message that cannot be turned into an RGB frame."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """An 8-bit `sensor_msgs/Image` as an HWC uint8 RGB array (a copy: the message buffer may be reused).

    Honours `step` (row padding) and `encoding`; grey images are replicated to 3 channels.
    """
    encoding = str(getattr(msg, "encoding", ""))
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {encoding!r}; expected one of {sorted(ENCODINGS)}")
    channels, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has no pixels: {height}x{width}")
    if step < width * channels:
        raise ImageError(f"image step {step} is shorter than a row of {width} {encoding} pixels")
    data = msg.data
    size = len(data)
    if size != step * height:
        raise ImageError(f"image data holds {size} bytes; {height} rows of step {step} need {step * height}")
    if not isinstance(data, (bytes, bytearray, np.ndarray)):
        data = bytes(data)  # rclpy gives array.array / list for uint8[]
    buf = np.frombuffer(data, np.uint8)
    rows = buf.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    return np.ascontiguousarray(rows[:, :, list(order)])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` (jpeg / png) as HWC uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    data = bytes(msg.data)
    if not data:
        raise ImageError(f"compressed image ({getattr(msg, 'format', '?')!r}) has no data")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        fmt = getattr(msg, "format", "?")
        raise ImageError(f"compressed image ({fmt!r}) does not decode: {err}") from None


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (PIL) to the policy's input size; a no-op when the size already matches."""
    if rgb.shape[:2] == (height, width):
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR), np.uint8)


def image_fields(rgb: np.ndarray, encoding: str = "rgb8", row_padding: int = 0) -> dict[str, Any]:
    """The `sensor_msgs/Image` fields of an HWC uint8 RGB array (for fake cameras, bags and tests)."""
    rgb = np.asarray(rgb, np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"expected an HWC RGB array, got shape {rgb.shape}")
    if encoding not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {encoding!r}")
    channels, order = ENCODINGS[encoding]
    height, width = rgb.shape[:2]
    if channels == 1:
        pixels = rgb.mean(axis=2, keepdims=True).round().astype(np.uint8)
    else:
        pixels = np.empty((height, width, channels), np.uint8)
        pixels[:, :, list(order)] = rgb
        if channels == 4:
            pixels[:, :, 3] = 255
    step = width * channels + row_padding
    rows = np.zeros((height, step), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return {"height": height, "width": width, "encoding": encoding, "is_bigendian": 0, "step": step,
            "data": rows.tobytes()}  # fmt: skip
