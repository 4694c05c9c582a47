"""The full-resolution head: un-patchified token features refined by a few convolutions.

A linear un-patchify predicts every patch on its own, so neighbouring patches disagree and the
frame shows a grid of seams. This head reads each token's features at every pixel of its patch,
together with the linear estimate, and lets 3x3 convolutions see across patch borders. It does
not read the noisy input: a shortcut from x_t lets the noise through to the x0 estimate.
Convolutions are per frame (no time mixing), so the block-causal rule and the KV cache are
untouched. The last convolution starts at zero: an untrained head adds nothing.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class PixelHead(nn.Module):
    def __init__(self, dim: int, patch: int, channels: int, width: int, ops) -> None:
        super().__init__()
        self.patch, self.width = patch, width
        self.features = ops.Linear(dim, patch * patch * width // 4)  # token -> per-pixel features
        self.conv_in = ops.Conv2d(width // 4 + channels, width, 3, padding=1)
        self.conv_mid = ops.Conv2d(width, width, 3, padding=1)
        self.conv_out = ops.Conv2d(width, channels, 3, padding=1)
        self.act = nn.SiLU()

    def zero_init(self) -> None:
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, tokens: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """tokens (B, T * N, D) final modulated tokens; base (B, C, T, H, W) the linear
        estimate. Returns the refined estimate (B, C, T, H, W)."""
        b, c, n_frames, h, w = base.shape
        p = self.patch
        feats = rearrange(  # (B, T * N, p * p * F) -> (B * T, F, H, W)
            self.features(tokens), "b (t h w) (p1 p2 f) -> (b t) f (h p1) (w p2)",
            t=n_frames, h=h // p, w=w // p, p1=p, p2=p,
        )
        frames = rearrange(base, "b c t h w -> (b t) c h w").to(feats.dtype)
        y = self.act(self.conv_in(torch.cat([feats, frames], dim=1)))  # (B * T, width, H, W)
        y = self.conv_out(self.act(self.conv_mid(y)))  # (B * T, C, H, W)
        return base + rearrange(y, "(b t) c h w -> b c t h w", b=b).to(base.dtype)
