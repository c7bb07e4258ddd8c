"""Frozen configs for every part of UIO2, with the released sizes and a small `tiny` one.

Numbers follow the official code (reference/uio2-architecture.md sections 1.1-1.4, 3.8).
`tiny` keeps every component and every quirk but shrinks widths, depths and image sizes so
the whole model runs in tests on a CPU in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import jax.numpy as jnp


@dataclass(frozen=True)
class TransformerConfig:
    """The encoder-decoder backbone (T5 v1.1 style with UIO2's changes)."""

    d_model: int = 1024
    num_heads: int = 16
    head_dim: int = 64
    mlp_dim: int = 2816
    num_encoder_layers: int = 24
    num_decoder_layers: int = 24
    text_vocab_size: int = 33280
    image_vocab_size: int = 16512
    audio_vocab_size: int = 8320
    qk_norm: bool = True
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    # Maximum lengths (encoder: per input modality; decoder: per target modality).
    encoder_max_text_length: int = 512
    decoder_max_text_length: int = 512


@dataclass(frozen=True)
class ViTConfig:
    """A frozen ViT used as feature extractor: CLIP ViT-B/16 for images, AST for audio.

    Only `num_layers` blocks are built (11 of 12 in the release). Features are the outputs of
    the last block and of block `second_feature_block` (1-based), concatenated.
    """

    patch_size: int = 16
    in_channels: int = 3
    width: int = 768
    num_heads: int = 12
    head_dim: int = 64
    mlp_dim: int = 3072
    num_layers: int = 11
    num_pos: int = 197  # learned rows incl. the prefix tokens
    num_prefix_tokens: int = 1  # CLS (image) or CLS + distillation (AST)
    norm_eps: float = 1e-5
    gelu_approximate: bool = False  # exact erf GELU for the image ViT, tanh for AST
    pre_ln: bool = True
    patch_bias: bool = False
    transpose_pos_ids: bool = False  # AST: position ids are mel-major
    second_feature_block: int = 2

    @property
    def pretrain_grid(self) -> int:
        """Side of the square grid the learned position table was trained on (image ViT)."""
        return math.isqrt(self.num_pos - self.num_prefix_tokens)


@dataclass(frozen=True)
class PerceiverConfig:
    """History resampler: frame features -> a few latents per frame."""

    num_latents: int = 32
    width: int = 768
    num_heads: int = 12
    head_dim: int = 64
    mlp_dim: int = 2048
    num_layers: int = 2
    qk_norm: bool = True
    scaled_cosine: bool = False
    max_frames: int = 8
    norm_eps: float = 1e-6
    # MLP activation: "tanh" GELU is what the original JAX code used (t5x/examples/unified_io/layers.py
    # MlpBlock resolves mlp_activations=('gelu',) with getattr(flax.linen, ...), whose gelu defaults to
    # approximate=True) and so what the released weights were trained with; "erf" is the exact GELU of
    # the official PyTorch port (nn.GELU()), selectable to reproduce its outputs exactly.
    gelu: str = "tanh"

    def __post_init__(self):
        if self.gelu not in ("tanh", "erf"):
            raise ValueError(f"PerceiverConfig.gelu must be 'tanh' or 'erf', got {self.gelu!r}")


@dataclass(frozen=True)
class VQGANConfig:
    """Image VQ-GAN target tokenizer (taming / LDM "vq-f8")."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (32,)
    z_channels: int = 4
    n_embed: int = 16384
    embed_dim: int = 4
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    num_groups: int = 32
    norm_eps: float = 1e-6

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> int:
        return self.resolution // self.downsample


@dataclass(frozen=True)
class AudioVQGANConfig:
    """Audio ViT-VQGAN target tokenizer over a (mel, time) log-mel spectrogram."""

    input_size: tuple[int, int] = (128, 256)  # (mel, time)
    patch_size: tuple[int, int] = (8, 8)
    width: int = 512
    num_heads: int = 8
    head_dim: int = 64
    mlp_dim: int = 2048
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    n_embed: int = 8192
    embed_dim: int = 32
    norm_eps: float = 1e-6

    @property
    def grid(self) -> tuple[int, int]:
        return (self.input_size[0] // self.patch_size[0], self.input_size[1] // self.patch_size[1])


@dataclass(frozen=True)
class UIO2Config:
    """The whole model: backbone, input encoders, history resamplers and target tokenizers."""

    name: str
    transformer: TransformerConfig
    image_vit: ViTConfig = field(default_factory=ViTConfig)
    audio_vit: ViTConfig = field(
        default_factory=lambda: ViTConfig(
            in_channels=1,
            num_pos=514,
            num_prefix_tokens=2,
            norm_eps=1e-6,
            gelu_approximate=True,
            pre_ln=False,
            patch_bias=True,
            transpose_pos_ids=True,
        )
    )
    image_history: PerceiverConfig = field(default_factory=PerceiverConfig)
    audio_history: PerceiverConfig = field(default_factory=lambda: PerceiverConfig(num_latents=16))
    image_vqgan: VQGANConfig = field(default_factory=VQGANConfig)
    audio_vqgan: AudioVQGANConfig = field(default_factory=AudioVQGANConfig)
    image_input_size: int = 384
    image_history_size: int = 256
    # Audio: log-mel spectrogram [time, mel] fed to the AST.
    audio_input_size: tuple[int, int] = (256, 128)
    # Compute dtype of backbone, resamplers and audio VQ-GAN; ViT/AST/image VQ-GAN run in fp32.
    dtype: str = "float32"
    param_dtype: str = "float32"

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def image_grid(self) -> int:
        return self.image_input_size // self.image_vit.patch_size

    @property
    def image_history_grid(self) -> int:
        return self.image_history_size // self.image_vit.patch_size

    @property
    def audio_grid(self) -> tuple[int, int]:
        p = self.audio_vit.patch_size
        return (self.audio_input_size[0] // p, self.audio_input_size[1] // p)

    @property
    def encoder_max_image_length(self) -> int:
        return self.image_grid**2

    @property
    def encoder_max_audio_length(self) -> int:
        t, m = self.audio_grid
        return t * m

    @property
    def decoder_max_image_length(self) -> int:
        return self.image_vqgan.grid**2

    @property
    def decoder_max_audio_length(self) -> int:
        g = self.audio_vqgan.grid
        return g[0] * g[1]

    @property
    def input_rope_scale(self) -> float:
        """Image-input RoPE coordinate scale sqrt(target tokens / input patches) (4/3 released).

        The official code uses the *image* lengths for the audio input too; so do we.
        """
        return math.sqrt(self.decoder_max_image_length / self.encoder_max_image_length)

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    def replace(self, **changes) -> UIO2Config:
        return dataclasses.replace(self, **changes)


def _large() -> UIO2Config:
    return UIO2Config(
        name="large",
        transformer=TransformerConfig(d_model=1024, num_heads=16, head_dim=64, mlp_dim=2816),
        image_history=PerceiverConfig(num_latents=32, width=768, num_heads=12, head_dim=64, mlp_dim=2048),
        audio_history=PerceiverConfig(num_latents=16, width=768, num_heads=12, head_dim=64, mlp_dim=2048),
    )


def _xl() -> UIO2Config:
    return UIO2Config(
        name="xl",
        transformer=TransformerConfig(d_model=2048, num_heads=16, head_dim=128, mlp_dim=5120),
        image_history=PerceiverConfig(num_latents=32, width=1024, num_heads=16, head_dim=64, mlp_dim=4096),
        audio_history=PerceiverConfig(num_latents=16, width=1024, num_heads=16, head_dim=64, mlp_dim=4096),
    )


def _xxl() -> UIO2Config:
    perceiver = dict(width=1024, num_heads=16, head_dim=64, mlp_dim=4096, qk_norm=False, scaled_cosine=True)
    return UIO2Config(
        name="xxl",
        transformer=TransformerConfig(d_model=3072, num_heads=24, head_dim=128, mlp_dim=8192),
        image_history=PerceiverConfig(num_latents=32, **perceiver),
        audio_history=PerceiverConfig(num_latents=16, **perceiver),
    )


def _tiny() -> UIO2Config:
    """Every component, every quirk, small: 64x64 main image, 48x48 history, 64x64 targets."""
    vit = ViTConfig(width=64, num_heads=4, head_dim=16, mlp_dim=128, num_layers=3, num_pos=17)
    ast = dataclasses.replace(
        _large().audio_vit, width=64, num_heads=4, head_dim=16, mlp_dim=128, num_layers=3, num_pos=2 + 128
    )
    return UIO2Config(
        name="tiny",
        transformer=TransformerConfig(
            d_model=64,
            num_heads=4,
            head_dim=16,
            mlp_dim=128,
            num_encoder_layers=2,
            num_decoder_layers=2,
            image_vocab_size=640,  # 512 codes + 2, rounded up to a multiple of 128 like the release
            audio_vocab_size=384,  # 256 codes + 2, rounded up
        ),
        image_vit=vit,
        audio_vit=ast,
        image_history=PerceiverConfig(num_latents=8, width=32, num_heads=2, head_dim=16, mlp_dim=64),
        audio_history=PerceiverConfig(num_latents=4, width=32, num_heads=2, head_dim=16, mlp_dim=64),
        image_vqgan=VQGANConfig(
            ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=64, n_embed=512
        ),
        audio_vqgan=AudioVQGANConfig(
            width=32,
            num_heads=2,
            head_dim=16,
            mlp_dim=64,
            num_encoder_layers=1,
            num_decoder_layers=1,
            n_embed=256,
        ),
        image_input_size=64,
        image_history_size=48,
    )


def _small() -> UIO2Config:
    """`tiny`'s widths and depths with 4x the main-image tokens: 128x128 main image (8x8 patches,
    the ViT's position table sized for it) and 64x64 history frames. For tabletop manipulation, where
    a pick must land within centimetres: at 64x64 a VIMA view (128x256) keeps 4x2 patches of scene."""
    tiny = _tiny()
    vit = dataclasses.replace(tiny.image_vit, num_pos=65)
    return tiny.replace(name="small", image_vit=vit, image_input_size=128, image_history_size=64)


def _small8() -> UIO2Config:
    """`small` with 8-px ViT patches: a 16x16 grid on the 128x128 main image (a VIMA top view keeps
    8x16 patches of about 6 cm of table) and 8x8 on the 64x64 history frames. About 4x `small`'s
    encoder tokens."""
    small = _small()
    vit = dataclasses.replace(small.image_vit, patch_size=8, num_pos=257)
    return small.replace(name="small8", image_vit=vit)


_CONFIGS = {"tiny": _tiny, "small": _small, "large": _large, "xl": _xl, "xxl": _xxl, "small8": _small8}
CONFIG_NAMES: tuple[str, ...] = tuple(_CONFIGS)


def get_config(name: str, **overrides) -> UIO2Config:
    """Config by name (`tiny`, `small`, `large`, `xl`, `xxl`, `small8`); keyword overrides replace
    top-level fields."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown config name {name!r}; expected one of {', '.join(CONFIG_NAMES)}")
    cfg = _CONFIGS[name]()
    return cfg.replace(**overrides) if overrides else cfg
