"""HiFi-GAN generator (jik876/hifi-gan, resblock type 2) for UIO2's audio: natural-log mel -> 16 kHz wave.

Published config (reference section 1.2): 128 mels, upsample rates 8, 8, 4 with kernels 16, 16, 8,
initial channels 256, resblock kernels 3, 5, 7 with dilations [1, 2], [2, 6], [3, 12]. Weights are
not redistributed: `HiFiGAN.load("g_00930000")` reads the user's torch checkpoint (weight-normed
`weight_g` / `weight_v` pairs are folded into plain weights). Layouts stay PyTorch's (NCW, OIW).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class HiFiGANConfig:
    num_mels: int = 128
    upsample_rates: tuple[int, ...] = (8, 8, 4)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8)
    upsample_initial_channel: int = 256
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (2, 6), (3, 12))
    sampling_rate: int = 16000

    @property
    def hop(self) -> int:
        return int(np.prod(self.upsample_rates))


def _conv1d(x: jax.Array, w: jax.Array, b: jax.Array, dilation: int = 1, padding: int = 0) -> jax.Array:
    """PyTorch Conv1d: x [B, C, T], w [O, I, K]."""
    y = jax.lax.conv_general_dilated(
        x, w, (1,), [(padding, padding)], rhs_dilation=(dilation,), dimension_numbers=("NCH", "OIH", "NCH")
    )
    return y + b[None, :, None]


def _conv_transpose1d(x: jax.Array, w: jax.Array, b: jax.Array, stride: int, padding: int) -> jax.Array:
    """PyTorch ConvTranspose1d: w [I, O, K] = a dilated conv with the flipped, transposed kernel."""
    k = w.shape[-1]
    kernel = jnp.flip(w, axis=-1).transpose(1, 0, 2)
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        (1,),
        [(k - 1 - padding, k - 1 - padding)],
        lhs_dilation=(stride,),
        dimension_numbers=("NCH", "OIH", "NCH"),
    )
    return y + b[None, :, None]


def fold_weight_norm(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`*.weight_g` + `*.weight_v` (or torch parametrizations) -> `*.weight` = g * v / |v| (dim 0)."""
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        for g_suffix, v_suffix in ((".weight_g", ".weight_v"), (".parametrizations.weight.original0", None)):
            if key.endswith(g_suffix):
                base = key[: -len(g_suffix)]
                v = state[base + (v_suffix or ".parametrizations.weight.original1")]
                norm = np.sqrt(
                    np.sum(np.square(v, dtype=np.float64), axis=tuple(range(1, v.ndim)), keepdims=True)
                )
                out[base + ".weight"] = (value * v / norm).astype(np.float32)
                break
        else:
            if not key.endswith((".weight_v", ".parametrizations.weight.original1")):
                out[key] = np.asarray(value, np.float32)
    return out


def generator_shapes(c: HiFiGANConfig = HiFiGANConfig()) -> dict[str, tuple[int, ...]]:
    """PyTorch parameter names and shapes of the generator (after weight-norm folding)."""
    ch = c.upsample_initial_channel
    out = {"conv_pre.weight": (ch, c.num_mels, 7), "conv_pre.bias": (ch,)}
    nk = len(c.resblock_kernel_sizes)
    for i, k in enumerate(c.upsample_kernel_sizes):
        cin, cout = ch // 2**i, ch // 2 ** (i + 1)
        out |= {f"ups.{i}.weight": (cin, cout, k), f"ups.{i}.bias": (cout,)}
        for j, (rk, dil) in enumerate(zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)):
            for n in range(len(dil)):
                out |= {f"resblocks.{i * nk + j}.convs.{n}.weight": (cout, cout, rk)}
                out |= {f"resblocks.{i * nk + j}.convs.{n}.bias": (cout,)}
    last = ch // 2 ** len(c.upsample_rates)
    return out | {"conv_post.weight": (1, last, 7), "conv_post.bias": (1,)}


class HiFiGAN:
    """The generator as a pure function of a flat PyTorch-named parameter dict."""

    def __init__(self, params: dict[str, np.ndarray], cfg: HiFiGANConfig = HiFiGANConfig()):
        self.cfg = cfg
        self.params = {k: jnp.asarray(v) for k, v in fold_weight_norm(params).items()}
        missing = sorted(set(generator_shapes(cfg)) - set(self.params))
        if missing:
            raise ValueError(f"HiFi-GAN weights lack {missing[0]!r} ({len(missing)} missing)")
        self._run = jax.jit(self._forward)

    @classmethod
    def random(cls, seed: int = 0, cfg: HiFiGANConfig = HiFiGANConfig()) -> HiFiGAN:
        """Random weights of the right shapes (tests, smoke runs)."""
        rng = np.random.default_rng(seed)
        params = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in generator_shapes(cfg).items()}
        return cls(params, cfg)

    @classmethod
    def load(cls, path: str | Path, cfg: HiFiGANConfig = HiFiGANConfig()) -> HiFiGAN:
        """The user's `g_00930000` (a torch file with a `generator` state dict)."""
        from uio2_core.checkpoints.torch_io import import_torch

        torch = import_torch()
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("generator", state)
        return cls({k: v.float().numpy() for k, v in state.items()}, cfg)

    def _forward(self, params: dict[str, jax.Array], mel: jax.Array) -> jax.Array:
        c, p = self.cfg, params
        nk = len(c.resblock_kernel_sizes)
        x = _conv1d(mel, p["conv_pre.weight"], p["conv_pre.bias"], padding=3)
        for i, (u, k) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True)):
            x = jax.nn.leaky_relu(x, 0.1)
            x = _conv_transpose1d(x, p[f"ups.{i}.weight"], p[f"ups.{i}.bias"], u, (k - u) // 2)
            total = 0.0
            for j, (rk, dil) in enumerate(
                zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True)
            ):
                h = x
                for n, d in enumerate(dil):
                    name = f"resblocks.{i * nk + j}.convs.{n}"
                    t = jax.nn.leaky_relu(h, 0.1)
                    h = h + _conv1d(t, p[f"{name}.weight"], p[f"{name}.bias"], d, (rk * d - d) // 2)
                total = total + h
            x = total / nk
        x = jax.nn.leaky_relu(x, 0.01)
        return jnp.tanh(_conv1d(x, p["conv_post.weight"], p["conv_post.bias"], padding=3))[:, 0]

    def __call__(self, log_mel: np.ndarray) -> np.ndarray:
        """Natural-log mel [B, num_mels, frames] (or [num_mels, frames]) -> waves [B, frames * 256]."""
        x = jnp.asarray(log_mel, jnp.float32)
        squeeze = x.ndim == 2
        y = np.asarray(self._run(self.params, x[None] if squeeze else x))
        return y[0] if squeeze else y
