"""Episode videos: GIF through Pillow (always), MP4 through PyAV (when installed), captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence

from agent.video import caption_frames, episode_frames, write_episode_video, write_video


def distinct_frames(n: int, h: int = 24, w: int = 40) -> list[np.ndarray]:
    """Frames of a few flat colours, each different (GIF keeps them exactly)."""
    frames = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (t + 1) * w // (n + 1)] = (255, 0, 0)
        f[h // 2 :, :, 2] = 255
        frames.append(f)
    return frames


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]


def test_gif_without_captions_round_trips(tmp_path):
    frames = distinct_frames(7)
    path = write_video(tmp_path / "ep.gif", frames, fps=5, captions=False)
    back = gif_frames(path)
    assert len(back) == 7
    for got, want in zip(back, frames, strict=True):
        np.testing.assert_array_equal(got, want)
    with Image.open(path) as im:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(im)]
    assert durations == [200] * 7


def test_gif_with_captions_keeps_every_frame(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 5  # identical frames: only the step caption differs
    actions = [0, 1, 2, 3, np.array([1], np.int64)]
    path = write_video(tmp_path / "ep.gif", frames, fps=10, prompt="go to the goal", actions=actions)
    back = gif_frames(path)
    assert len(back) == 5
    h, w = back[0].shape[:2]
    assert w == 256 and h > 256  # upscaled 8x for legible text, band below
    assert not np.array_equal(back[0][256:], back[1][256:])  # the step counter changed
    assert back[0][:256].max() == 0  # the observation itself is untouched


def test_caption_band_grows_with_the_prompt():
    frames = distinct_frames(2, 64, 256)
    short = caption_frames(frames, "short", [0, 1])
    long = caption_frames(frames, "a much longer prompt " * 12, [0, 1])
    assert short[0].shape[1] == long[0].shape[1] == 256
    assert long[0].shape[0] > short[0].shape[0] > 64
    vima = {"pose0_position": [0.3, 0.1], "pose0_rotation": [0, 0, 0, 1]}
    vima |= {"pose1_position": [0.5, -0.2], "pose1_rotation": [0, 0, 0, 1]}
    band = caption_frames(frames[:1], None, [vima])[0][64:]
    assert band.max() > 0  # text was drawn


def test_video_errors(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.gif", [])
    with pytest.raises(ValueError, match="one shape"):
        write_video(tmp_path / "a.gif", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match="unsupported video format"):
        write_video(tmp_path / "a.avi", distinct_frames(2))


def test_episode_video_from_recorded_dataset(tmp_path):
    from agent.recording import TrajectoryRecorder
    from training.dataset import open_dataset

    image = {"dtype": "image", "shape": [16, 32, 3], "names": ["height", "width", "channels"]}
    features = {
        "observation.images.front": image,
        "observation.images.top": image,
        "action": {"dtype": "float32", "shape": [12], "names": None},
    }
    rng = np.random.default_rng(0)
    with TrajectoryRecorder(tmp_path / "ds", 4, features) as rec:
        rec.start_episode("stack the blocks")
        for _ in range(3):
            rec.add_frame(
                {
                    "observation.images.front": rng.integers(0, 256, (16, 32, 3), dtype=np.uint8),
                    "observation.images.top": rng.integers(0, 256, (16, 32, 3), dtype=np.uint8),
                    "action": rng.uniform(0, 1, 12).astype(np.float32),
                }
            )
        rec.end_episode()
    ds = open_dataset(tmp_path / "ds")
    frames = episode_frames(ds.episode(0))
    assert len(frames) == 3 and frames[0].shape == (16, 64, 3)
    path = write_episode_video(ds, 0, tmp_path / "ep0.gif")
    assert len(gif_frames(path)) == 3


def test_mp4_with_pyav(tmp_path):
    av = pytest.importorskip("av", reason="MP4 needs the optional PyAV package")
    frames = distinct_frames(6, 30, 50)  # odd sizes get padded for yuv420p
    path = write_video(tmp_path / "ep.mp4", frames, fps=5, prompt="hello", actions=list(range(6)))
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6
    assert decoded[0].shape[1] == 300  # 50 px upscaled 6x so that captions are at least 256 px wide
