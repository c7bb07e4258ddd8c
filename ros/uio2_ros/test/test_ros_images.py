"""Camera messages -> RGB arrays: every encoding, row padding, and malformed input named."""

from __future__ import annotations

import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from uio2_ros.images import ImageError, compressed_to_rgb, image_fields, image_to_rgb, resize


def _rgb(h: int = 5, w: int = 7) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("padding", [0, 3])
def test_colour_encodings_round_trip(encoding, padding):
    rgb = _rgb()
    msg = SimpleNamespace(**image_fields(rgb, encoding, row_padding=padding))
    assert msg.step == rgb.shape[1] * (4 if "a" in encoding else 3) + padding
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bgr_bytes_are_swapped():
    msg = SimpleNamespace(height=1, width=1, encoding="bgr8", step=3, data=bytes([10, 20, 30]))
    assert image_to_rgb(msg).tolist() == [[[30, 20, 10]]]


def test_mono_is_replicated_to_three_channels():
    msg = SimpleNamespace(height=2, width=2, encoding="mono8", step=4, data=bytes([1, 2, 0, 0, 3, 4, 0, 0]))
    out = image_to_rgb(msg)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[:, :, 0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(out[:, :, 2], out[:, :, 0])


def test_rclpy_style_array_data_is_accepted():
    rgb = _rgb(3, 4)
    fields = image_fields(rgb)
    fields["data"] = array.array("B", fields["data"])  # what rclpy gives for uint8[]
    np.testing.assert_array_equal(image_to_rgb(SimpleNamespace(**fields)), rgb)


def test_output_does_not_alias_the_message_buffer():
    buf = bytearray(image_fields(_rgb(2, 2))["data"])
    out = image_to_rgb(SimpleNamespace(height=2, width=2, encoding="rgb8", step=6, data=buf))
    before = out.copy()
    buf[:] = bytes(len(buf))
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"encoding": "16UC1"}, "unsupported image encoding '16UC1'"),
        ({"encoding": ""}, "unsupported image encoding ''"),
        ({"step": 20}, "step 20 is shorter"),
        ({"height": 0}, "no pixels"),
        ({"data": b""}, "holds 0 bytes"),
        ({"data": bytes(10)}, "holds 10 bytes"),
    ],
)
def test_malformed_images_are_named(change, words):
    fields = {**image_fields(_rgb()), **change}
    with pytest.raises(ImageError, match=words.replace("(", r"\(")):
        image_to_rgb(SimpleNamespace(**fields))


def test_compressed_png_is_lossless_and_jpeg_close():
    rgb = _rgb(16, 16)
    png, jpg = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(jpg, format="JPEG", quality=95)
    np.testing.assert_array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=png.getvalue())), rgb)
    grey = compressed_to_rgb(SimpleNamespace(format="jpeg", data=jpg.getvalue()))
    assert np.abs(grey.astype(int) - 128).max() <= 2


@pytest.mark.parametrize(("data", "words"), [(b"", "has no data"), (b"not an image", "does not decode")])
def test_bad_compressed_images_are_named(data, words):
    with pytest.raises(ImageError, match=words):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=data))


def test_resize_keeps_matching_frames_and_resizes_others():
    rgb = _rgb(8, 8)
    assert resize(rgb, 8, 8) is rgb
    assert resize(rgb, 4, 6).shape == (4, 6, 3)
