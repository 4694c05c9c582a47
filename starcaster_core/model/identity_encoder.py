"""The model's identity encoder: a face crop -> an identity embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


class IdentityEncoder(nn.Module):
    """A small CNN over a square RGB face crop in [-1, 1]: (B, 3, S, S) -> (B, identity_dim).

    Its output lives in the same space as the embeddings the denoiser is conditioned on, so a
    portrait, a saved embedding, a mix of two and a random draw are interchangeable.
    """

    def __init__(self, config: ModelConfig, operations) -> None:
        super().__init__()
        ops, widths = operations, (32, 64, 128, 128)
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in widths:  # each stage halves the side
            layers += [ops.Conv2d(c_in, c_out, 3, stride=2, padding=1), ops.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = ops.Linear(2 * c_in, config.identity_dim)
        self.size = config.identity_image

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        dtype = self.head.weight.dtype
        # resized in fp32 (CPU antialiased resizing has no bf16 kernel), then cast to the weights' dtype
        x = F.interpolate(crops.float(), size=(self.size, self.size), mode="bilinear", antialias=True).to(dtype)
        h = self.features(x)  # (B, 128, S/16, S/16)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 256)
        return self.head(pooled).float()
