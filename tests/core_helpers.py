"""Shared helpers of the core unit tests: a tiny randomised model and its conditioning."""

from __future__ import annotations

from dataclasses import replace

import torch

from starcaster_core.conditioning import Conditioning, make_conditioning
from starcaster_core.config import PRESETS
from starcaster_core.model import STARCaster

TINY = PRESETS["tiny"]


def tiny_model(seed: int = 0, **config) -> STARCaster:
    """The 2-layer, dim-64 model with every weight random (an untrained adaLN-Zero model is
    constant, which would make equality tests vacuous); `config` overrides preset fields."""
    torch.manual_seed(seed)
    model = STARCaster(replace(TINY, **config))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


def tiny_cond(frames: int, batch: int = 1, seed: int = 0) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return make_conditioning(
        identity=torch.randn(batch, TINY.identity_dim, generator=g),
        audio=torch.randn(batch, frames, TINY.audio_window, TINY.audio_mels, generator=g),
        camera=torch.randn(batch, frames, TINY.camera_dim, generator=g),
        motion=1.0,
    )


def tiny_video(frames: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TINY.channels, frames, TINY.height, TINY.width, generator=g)
