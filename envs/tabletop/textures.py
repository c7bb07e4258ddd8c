"""Procedural textures (solid colours, stripes, polka dots, ...) drawn with numpy and written as small TGA
files that pybullet can load (it only loads textures from files); no downloaded images."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (50, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 190),
    "cyan": (40, 200, 210),
    "orange": (245, 140, 30),
    "pink": (245, 140, 190),
    "olive": (128, 128, 40),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "gray": (140, 140, 140),
}
TEX_SIZE = 64


@dataclass(frozen=True)
class Texture:
    """A named texture; ``pattern`` is "solid" or a procedural pattern over ``colors``."""

    name: str
    pattern: str
    colors: tuple[tuple[int, int, int], ...]

    @property
    def mean_rgb(self) -> tuple[float, float, float]:
        """Representative colour (0..1) used when a renderer cannot show the pattern."""
        img = texture_image(self)
        return tuple(float(c) / 255.0 for c in img.reshape(-1, 3).mean(0))  # type: ignore[return-value]


def texture_image(tex: Texture) -> np.ndarray:
    """HxWx3 uint8 image of the texture (deterministic, no RNG state shared with the envs)."""
    n = TEX_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    c = [np.array(col, dtype=np.float32) for col in tex.colors]
    if tex.pattern == "solid":
        mask = np.zeros((n, n), bool)
    elif tex.pattern == "stripe":
        mask = ((xx + yy) // 8) % 2 == 1
    elif tex.pattern == "polka dot":
        mask = ((xx % 16 - 8) ** 2 + (yy % 16 - 8) ** 2) < 16
    elif tex.pattern == "checkerboard":
        mask = ((xx // 16 + yy // 16) % 2) == 1
    elif tex.pattern == "swirl":
        ang = np.arctan2(yy - n / 2, xx - n / 2)
        rad = np.hypot(yy - n / 2, xx - n / 2)
        mask = np.sin(3 * ang + rad / 3) > 0
    elif tex.pattern == "tiles":
        mask = (xx % 16 < 2) | (yy % 16 < 2)
    elif tex.pattern == "wooden":
        mask = np.sin(xx / 2.5 + 2 * np.sin(yy / 9)) > 0.3
    elif tex.pattern == "granite":
        rng = np.random.default_rng(7)
        mask = rng.random((n, n)) > 0.6
    elif tex.pattern == "rainbow":
        return _rainbow(yy, n)
    else:
        raise ValueError(f"unknown texture pattern {tex.pattern!r}")
    img = np.broadcast_to(c[0], (n, n, 3)).copy()
    if len(c) > 1:
        img[mask] = c[1]
    return img.astype(np.uint8)


RAINBOW_PERIODS = 4


def _rainbow(yy: np.ndarray, n: int) -> np.ndarray:
    """A continuous hue gradient (magenta, blue, cyan, green, yellow, red) like VIMA-Bench's rainbow
    image; it repeats ``RAINBOW_PERIODS`` times down the texture because pybullet maps only part of the
    texture onto each face of a box, and every face must still show the whole spectrum."""
    t = (yy * RAINBOW_PERIODS / n) % 1.0
    hue = (1.0 - t) * 300.0 / 60.0  # degrees / 60: 5 (magenta) down to 0 (red)
    x = 1.0 - np.abs(hue % 2.0 - 1.0)
    sector = np.floor(hue).astype(int) % 6
    one, zero = np.ones_like(x), np.zeros_like(x)
    table = [(one, x, zero), (x, one, zero), (zero, one, x), (zero, x, one), (x, zero, one), (one, zero, x)]
    rgb = np.zeros((*yy.shape, 3), np.float32)
    for k, (r, g, b) in enumerate(table):
        m = sector == k
        rgb[m] = np.stack([r[m], g[m], b[m]], -1)
    return (rgb * 255.0).round().astype(np.uint8)


def _build_textures() -> dict[str, Texture]:
    out: dict[str, Texture] = {}
    for name, rgb in COLORS.items():
        out[name] = Texture(name, "solid", (rgb,))
    pairs = [
        ("red", "yellow"),
        ("yellow", "blue"),
        ("green", "blue"),
        ("red", "blue"),
        ("purple", "white"),
        ("orange", "green"),
        ("pink", "cyan"),
        ("blue", "white"),
    ]
    for a, b in pairs:
        for pat in ("stripe", "polka dot", "swirl"):
            out[f"{a} and {b} {pat}"] = Texture(f"{a} and {b} {pat}", pat, (COLORS[a], COLORS[b]))
    out["checkerboard"] = Texture("checkerboard", "checkerboard", ((30, 30, 30), (230, 230, 230)))
    out["tiles"] = Texture("tiles", "tiles", ((200, 190, 170), (90, 90, 90)))
    out["wooden"] = Texture("wooden", "wooden", ((160, 110, 60), (110, 70, 35)))
    out["granite"] = Texture("granite", "granite", ((120, 120, 120), (200, 200, 200)))
    out["tiger"] = Texture("tiger", "wooden", ((240, 140, 30), (25, 25, 25)))
    out["rainbow"] = Texture("rainbow", "rainbow", ((0, 0, 0),))
    return out


TEXTURES: dict[str, Texture] = _build_textures()

# Texture sets by role, like the benchmark's "color set 1" (dragged) and "color set 2" (base) at level L1.
DRAGGED_TEXTURES_L1: tuple[str, ...] = (
    "red",
    "green",
    "yellow",
    "pink",
    "orange",
    "granite",
    "tiger",
    "rainbow",
    "red and yellow stripe",
    "yellow and blue polka dot",
    "green and blue swirl",
    "red and blue stripe",
    "orange and green polka dot",
)
BASE_TEXTURES_L1: tuple[str, ...] = (
    "blue",
    "purple",
    "cyan",
    "olive",
    "white",
    "tiles",
    "wooden",
    "checkerboard",
    "purple and white stripe",
    "pink and cyan polka dot",
    "blue and white swirl",
    "brown",
    "gray",
)

_TEX_DIR: str | None = None
_PATHS: dict[str, str] = {}


def _texture_dir() -> str:
    """A shared cache dir (textures are deterministic, so files are reused by every process and never leak
    from vector-env workers); falls back to a temp dir when the cache is not writable."""
    global _TEX_DIR
    if _TEX_DIR is None:
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(root, "uio2-embodied", "tabletop_textures")
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path):
                pass
        except OSError:
            path = os.path.join(tempfile.gettempdir(), f"uio2_tabletop_textures_{os.getuid()}")
            os.makedirs(path, exist_ok=True)
        _TEX_DIR = path
    return _TEX_DIR


def texture_file(name: str) -> str:
    """Path of the texture's TGA file; the name carries a content hash, so a changed pattern is a new file."""
    if name in _PATHS:
        return _PATHS[name]
    img = texture_image(TEXTURES[name])
    digest = hashlib.sha256(img.tobytes()).hexdigest()[:12]
    path = os.path.join(_texture_dir(), f"{name.replace(' ', '_')}_{digest}.tga")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.part"
        _write_tga(tmp, img)
        os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    _PATHS[name] = path
    return path


def _write_tga(path: str, img: np.ndarray) -> None:
    """Uncompressed 24-bit TGA, top-left origin: the simplest format pybullet's loader reads."""
    h, w, _ = img.shape
    header = bytes([0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, w & 255, w >> 8, h & 255, h >> 8, 24, 0x20])
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(img[:, :, ::-1]).tobytes())
