"""Positional and scalar embeddings: sinusoidal scalars, 2D spatial table, temporal rotary."""

from __future__ import annotations

import math

import torch


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of a scalar tensor: (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device) / half)
    args = x.float()[..., None] * freqs  # (..., half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def spatial_table(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos table for an h x w patch grid: (h * w, dim)."""
    assert dim % 4 == 0, f"spatial embedding dim {dim} must be divisible by 4"
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb_y = sinusoidal(ys.flatten().float(), dim // 2, max_period=100.0)  # (h*w, dim/2)
    emb_x = sinusoidal(xs.flatten().float(), dim // 2, max_period=100.0)  # (h*w, dim/2)
    return torch.cat([emb_y, emb_x], dim=-1)  # (h*w, dim)


def rotary_angles(frames: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal rotary (RoPE) cos/sin for tokens at integer frame indices.

    Rotates the first half of each head's channels by the token's frame index; the second half
    is left alone (its position is spatial, carried by the additive table). Angles are made in
    float64 so frame indices of long videos (tens of thousands) keep their precision.
    frames: (L,) -> cos, sin: (L, head_dim // 2)
    """
    rot = head_dim // 2
    freqs = 1.0 / (10000.0 ** (torch.arange(0, rot, 2, dtype=torch.float64, device=frames.device) / rot))
    args = frames.double()[:, None] * freqs  # (L, rot/2)
    args = torch.cat([args, args], dim=-1)  # (L, rot)
    return args.cos().float(), args.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, L, Dh); cos/sin: (L, Dh/2) applied to the first Dh/2 channels."""
    rot = cos.shape[-1]
    xr, xp = x[..., :rot], x[..., rot:]
    x1, x2 = xr.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    xr = xr * cos.to(x.dtype) + rotated * sin.to(x.dtype)
    return torch.cat([xr, xp], dim=-1)
