"""Frozen, typed configs and the named model presets.

A `ModelConfig` fully describes a denoiser: checkpoints store it as JSON in their safetensors
metadata and the model is rebuilt from it (never guessed from tensor shapes).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

Space = Literal["pixel", "latent"]
Prediction = Literal["x0", "v"]


@dataclass(frozen=True)
class ModelConfig:
    """Geometry and conditioning sizes of the spatio-temporal denoiser."""

    name: str = "demo"
    space: Space = "pixel"  # "pixel": frames are RGB in [-1, 1]; "latent": a ComfyUI VAE's latents
    channels: int = 3  # C of the [B, C, T, H, W] video tensor the model denoises
    height: int = 64  # H of that tensor (pixels or latent cells)
    width: int = 64  # W of that tensor
    vae_scale: int = 1  # pixels per latent cell (8 for SD/Flux-style VAEs, 1 in pixel space)
    patch: int = 8  # square patch size; tokens per frame = (H / patch) * (W / patch)
    dim: int = 128  # transformer width
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads (dim % heads == 0)
    mlp_ratio: float = 4.0
    chunk: int = 4  # frames per autoregressive chunk at training time
    context_frames: int = 8  # rolling KV window, in frames, used by default at inference
    identity_dim: int = 32  # size of an identity embedding
    identity_tokens: int = 4  # permanent "sink" tokens made from the identity embedding
    audio_mels: int = 32  # mel bands of the audio features
    audio_window: int = 8  # audio feature samples per video frame (a window around the frame)
    audio_span: float = 0.32  # seconds covered by that window, centred on the frame
    camera_dim: int = 10  # per-frame camera features (rotation matrix + log distance)
    fps: float = 25.0  # frame rate the model was trained at
    sample_rate: int = 16000  # audio rate the features are computed at
    prediction: Prediction = "x0"  # what the network outputs; the loss is always on velocity
    identity_image: int = 64  # side of the square face crop the identity encoder reads
    head_channels: int = 0  # width of the full-resolution conv head after un-patchify (0: none)
    silu_conditioning: bool = False  # SiLU on the per-frame conditioning before every adaLN (as DiT)
    identity_canvas: bool = False  # add an identity-dependent embedding to every token position
    head_skip: bool = False  # the conv head also reads the noisy input x_t
    frame_prior: bool = False  # a linear map (identity, camera) -> frame added to the x0 estimate
    context_noise: float = 0.0  # noise level of the generated frames the sampler keeps as context
    audio_canvas: bool = False  # also add the audio embedding to every token, gated per token position
    previous_frame: bool = False  # every frame also reads the last frame before its chunk (model/previous_frame.py)
    copy_previous: bool = False  # with previous_frame: the estimate is a residual of that frame (see transformer.py)
    spatial_rope: bool = False  # rotary positions in (frame, row, column), not in frame alone (3D RoPE)
    reference_frame: bool = False  # every frame also reads the identity's portrait as pixels (model/reference_frame.py)
    reference_warp: bool = False  # reference_frame: the portrait is turned to each frame's camera first (view_warp.py)
    reference_mask_mouth: bool = False  # reference_frame: the portrait's mouth box is blanked (reference_frame.py)
    mouth_branch: int = 0  # width of the conv branch drawing the mouth from the audio (model/mouth_branch.py; 0: none)
    pose_prior: int = 0  # width of the prior that draws head turns from the speech (model/pose_prior.py; 0: none)

    def __post_init__(self) -> None:
        assert self.dim % self.heads == 0, f"dim {self.dim} must be divisible by heads {self.heads}"
        assert (self.dim // self.heads) % 2 == 0, "head dim must be even for rotary embeddings"
        assert self.height % self.patch == 0 and self.width % self.patch == 0, (
            f"frame {self.height}x{self.width} must be divisible by patch {self.patch}"
        )
        assert self.chunk >= 1 and self.context_frames >= 0, "chunk >= 1, context_frames >= 0"
        assert 0.0 <= self.context_noise < 0.5, f"context_noise must be in [0, 0.5), got {self.context_noise}"
        assert not (self.frame_prior and self.prediction == "v"), "the frame prior needs x0 prediction"
        assert not self.copy_previous or (self.previous_frame and self.prediction == "x0"), (
            "copy_previous needs previous_frame and x0 prediction"
        )
        assert not self.reference_frame or self.space == "pixel", (
            "reference_frame reads the portrait as pixels: pixel-space models only"
        )
        assert not self.reference_warp or self.reference_frame, "reference_warp needs reference_frame"
        assert not self.reference_mask_mouth or self.reference_frame, "reference_mask_mouth needs reference_frame"
        assert self.mouth_branch >= 0, f"mouth_branch is a width (0: none), got {self.mouth_branch}"
        assert self.pose_prior >= 0, f"pose_prior is a width (0: none), got {self.pose_prior}"
        assert not self.spatial_rope or (self.dim // self.heads) % 8 == 0, "spatial_rope needs head dim divisible by 8"

    @property
    def tokens_per_frame(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(height, width) of the frames in pixels."""
        return self.height * self.vae_scale, self.width * self.vae_scale

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}: file made by a newer STARCaster?")
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    # 64x64 RGB in pixel space, no VAE: sized to run faster than real time on 2 CPU cores. The
    # portrait is turned to each frame's camera, and the head-pose prior turns that camera with
    # the speech (README, Status, session 14).
    "demo": ModelConfig(head_channels=32, silu_conditioning=True, reference_frame=True, reference_warp=True,
                        pose_prior=64),
    # 512x512 video in a 4-channel VAE latent space (SD1.5/SDXL VAE, 64x64 latents): one GPU.
    "base": ModelConfig(
        name="base", space="latent", channels=4, height=64, width=64, vae_scale=8, patch=2,
        dim=768, depth=12, heads=12, chunk=4, context_frames=24, identity_dim=512,
        identity_tokens=8, audio_mels=80, audio_window=16, identity_image=112, pose_prior=128,
    ),
    # 512x512 video in a 16-channel VAE latent space (Flux/SD3-style VAE): large GPUs.
    "large": ModelConfig(
        name="large", space="latent", channels=16, height=64, width=64, vae_scale=8, patch=2,
        dim=1152, depth=28, heads=16, chunk=4, context_frames=32, identity_dim=512,
        identity_tokens=16, audio_mels=80, audio_window=16, identity_image=112, pose_prior=128,
    ),
    # Unit-test size: 2 layers, width 64.
    "tiny": ModelConfig(
        name="tiny", height=16, width=16, patch=4, dim=64, depth=2, heads=4, chunk=2,
        context_frames=4, identity_dim=32, identity_tokens=2, audio_mels=8, audio_window=4,
        identity_image=16, head_channels=8, silu_conditioning=True, identity_canvas=True, head_skip=True,
        frame_prior=True, context_noise=0.1, audio_canvas=True, previous_frame=True, copy_previous=True,
        spatial_rope=True, reference_frame=True, pose_prior=16, mouth_branch=8,
    ),
}
