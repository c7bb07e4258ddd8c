"""Episode videos for people: GIF with Pillow (always available), MP4 with PyAV (optional `av` extra).

Optionally each frame gets a caption band under the image with the prompt, the step and the decoded
action, drawn with Pillow's default font (no font files to ship). The band sits below the image so the
observation itself stays unmodified. Small frames (PointNav at 32 px) are upscaled by an integer
factor first so the text is legible.

GIF caveat: Pillow merges identical consecutive frames into one longer frame (timing is kept). With
captions on, every frame carries its step number, so none are merged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.features import describe_action

MIN_CAPTION_WIDTH = 256
_PAD = 3
_BACKGROUND = (0, 0, 0)
_TEXT = (255, 255, 255)


def has_av() -> bool:
    """Whether MP4 output is possible (PyAV importable)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _wrap(text: str, font: Any, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Greedy word wrap to a pixel width (long words are cut)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while draw.textlength(word, font=font) > width and len(word) > 1:
                cut = max(1, int(len(word) * width / draw.textlength(word, font=font)))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


PROMPT_IMAGE_SIZE = 48  # px of each prompt image in the caption band


def _prompt_strip(
    images: Sequence[tuple[str, np.ndarray]], width: int, font: Any, line_height: int
) -> Image.Image:
    """The prompt's images side by side, each labelled with its placeholder name."""
    side = PROMPT_IMAGE_SIZE
    strip = Image.new("RGB", (width, side + line_height + _PAD), _BACKGROUND)
    draw = ImageDraw.Draw(strip)
    x = _PAD
    for name, img in images:
        tile = Image.fromarray(np.asarray(img, np.uint8)).convert("RGB")
        tile.thumbnail((side, side))
        strip.paste(tile, (x, 0))
        draw.text((x, side + 1), "{" + name + "}", fill=_TEXT, font=font)
        x += max(side, int(draw.textlength("{" + name + "}", font=font))) + 2 * _PAD
    return strip


def caption_frames(
    frames: Sequence[np.ndarray], prompt: str | None = None, actions: Sequence[Any] | None = None,
    prompt_images: Sequence[tuple[str, np.ndarray]] | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """Frames (HWC uint8) with a caption band: prompt, `step t/N` and the action taken at that step.

    `actions` are raw actions (int, VIMA dict, stored row) or ready strings; all bands get the height of
    the tallest so the video keeps one size. `prompt_images` ((placeholder name, HWC image) pairs: a
    VIMA prompt's objects) are drawn in the band under the prompt text, labelled with their names.
    """
    if not frames:
        return []
    h, w = frames[0].shape[:2]
    scale = max(1, math.ceil(MIN_CAPTION_WIDTH / w))
    width = w * scale
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = probe.textbbox((0, 0), "Ag", font=font)[3] + 2
    texts = []
    for t in range(len(frames)):
        lines = _wrap(prompt, font, width - 2 * _PAD, probe) if prompt else []
        step = f"step {t + 1}/{len(frames)}"
        if actions is not None and t < len(actions) and actions[t] is not None:
            action = actions[t] if isinstance(actions[t], str) else describe_action(actions[t])
            step = f"{step}  {action}"
        texts.append(lines + _wrap(step, font, width - 2 * _PAD, probe))
    band = 2 * _PAD + line_height * max(len(lines) for lines in texts)
    strip = _prompt_strip(prompt_images, width, font, line_height) if prompt_images else None
    strip_h = strip.height if strip is not None else 0
    band += strip_h
    out = []
    for frame, lines in zip(frames, texts, strict=True):
        image = Image.fromarray(np.asarray(frame, np.uint8))
        if scale > 1:
            image = image.resize((width, h * scale), Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (width, h * scale + band), _BACKGROUND)
        canvas.paste(image.convert("RGB"), (0, 0))
        draw = ImageDraw.Draw(canvas)
        for k, line in enumerate(lines):
            draw.text((_PAD, h * scale + _PAD + k * line_height), line, fill=_TEXT, font=font)
        if strip is not None:
            canvas.paste(strip, (0, h * scale + band - strip_h))
        out.append(np.asarray(canvas))
    return out


def _write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    duration = max(20, round(1000 / fps))  # browsers clamp faster GIF frames
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    try:
        import av
    except ImportError as err:
        raise ImportError("MP4 output needs PyAV: pip install av (or write a .gif)") from err
    h, w = frames[0].shape[:2]
    even = (h + h % 2, w + w % 2)  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = None
        for codec in ("libx264", "h264", "libopenh264", "mpeg4"):
            try:
                stream = container.add_stream(codec, rate=round(fps))
                break
            except (ValueError, av.error.FFmpegError):  # codec not in this FFmpeg build
                continue
        if stream is None:
            raise RuntimeError("this PyAV build has no H.264 or MPEG-4 encoder")
        stream.width, stream.height, stream.pix_fmt = even[1], even[0], "yuv420p"
        for frame in frames:
            padded = np.zeros((*even, 3), np.uint8)
            padded[:h, :w] = frame[..., :3]
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray],
    fps: float = 10.0,
    prompt: str | None = None,
    actions: Sequence[Any] | None = None,
    captions: bool = True,
    prompt_images: Sequence[tuple[str, np.ndarray]] | None = None,
) -> Path:
    """Write HWC uint8 frames as .gif (Pillow) or .mp4 (PyAV); captions as in `caption_frames`."""
    path = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"all frames must have one shape, got {sorted(shapes)}")
    out = (
        caption_frames(frames, prompt, actions, prompt_images)
        if captions
        else [np.asarray(f, np.uint8) for f in frames]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        _write_gif(path, out, fps)
    elif suffix == ".mp4":
        _write_mp4(path, out, fps)
    else:
        raise ValueError(f"unsupported video format {suffix!r}; use .gif or .mp4")
    return path


def episode_frames(episode: dict[str, np.ndarray], views: Sequence[str] | None = None) -> list[np.ndarray]:
    """Per-frame images of a read-back episode; several views are put side by side."""
    keys = sorted(k for k in episode if k.startswith("observation.images."))
    if views is not None:
        keys = [f"observation.images.{v}" for v in views]
    if not keys:
        raise ValueError("the episode has no image features")
    stacked = np.concatenate([episode[k] for k in keys], axis=2)
    return list(stacked)


def write_episode_video(
    dataset: Any,
    episode_index: int,
    path: str | Path,
    views: Sequence[str] | None = None,
    captions: bool = True,
) -> Path:
    """A recorded episode (training.dataset) as a video, captioned with its task and decoded actions."""
    episode = dataset.episode(episode_index)
    prompt = str(episode["task"][0]) if len(episode["task"]) else None
    actions = list(episode["action"]) if "action" in episode else None
    return write_video(path, episode_frames(episode, views), dataset.fps, prompt, actions, captions)
