"""One transformer block with per-frame adaLN-Zero conditioning."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention


def per_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Tokens (B, T * N, D) of T frames as a view (B, T, N, D), for per-frame (B, T, 1, D) terms."""
    return x.view(x.shape[0], frames, -1, x.shape[-1])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T * N, D) or (B, T, N, D); shift and scale (B, T, 1, D), broadcast over each frame's
    N tokens (not repeated for each) -> x's shape."""
    return (per_frame(x, shift.shape[1]) * (1 + scale) + shift).view_as(x)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, ops) -> None:
        super().__init__()
        self.norm1 = ops.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, ops)
        self.norm2 = ops.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(ops.Linear(dim, hidden), nn.GELU(approximate="tanh"), ops.Linear(hidden, dim))
        self.sink_norm = ops.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = ops.Linear(dim, 6 * dim)  # per-frame shift/scale/gate, zero-initialised

    def sink_kv(self, sink_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the identity sink tokens (B, S, D) -> (B, H, S, Dh) each."""
        _, k, v = self.attn.project(self.sink_norm(sink_tokens))
        return k, v

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-frame shift1, scale1, gate1, shift2, scale2, gate2: 6 x (B, T, 1, D), broadcast
        over a frame's N tokens (`per_frame`), not repeated for each."""
        return self.ada(cond)[:, :, None].chunk(6, dim=-1)  # (B, T, 6D) -> 6 x (B, T, 1, D)

    def keys_values(self, x, cond, rope) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the keys/values this block's attention makes of x (rotated as `forward` returns
        them): all a cache-writing pass needs of the last block."""
        shift1, scale1 = self.modulation(cond)[:2]
        return self.attn.keys_values(modulate(self.norm1(x), shift1, scale1), rope)

    def forward(self, x, cond, rope, sink, past, groups):
        """x: (B, T * N, D) tokens of T frames; cond: (B, T, D) per-frame conditioning."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)
        h, kv = self.attn(modulate(self.norm1(x), shift1, scale1), rope, sink, past, groups)
        frames = per_frame(x, cond.shape[1])  # (B, T, N, D): a frame's tokens share its gates
        frames = frames + gate1 * per_frame(h, cond.shape[1])
        frames = frames + gate2 * self.mlp(modulate(self.norm2(frames), shift2, scale2))
        return frames.view_as(x), kv
