"""Block-causal spatio-temporal self-attention (SDPA) with identity sink tokens and a KV prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .embeddings import apply_rotary

SINK_FRAME = -(2**62)  # frame index given to sink tokens: every query may see them


def block_causal_mask(
    q_frames: torch.Tensor, k_frames: torch.Tensor, block: int, window: int | None
) -> torch.Tensor | None:
    """Which keys each query may attend to, from the frame index of every token.

    A query of frame f sees a key of frame g iff g's chunk (g // block) is not after f's chunk,
    and, with a rolling window of W frames, g >= (start of f's chunk) - W. Sink tokens
    (SINK_FRAME) are always visible. Returns (Lq, Lk) bool, or None when everything is visible
    (lets SDPA take its fastest kernel).
    """
    q_chunk = torch.div(q_frames, block, rounding_mode="floor")  # (Lq,)
    sink = k_frames == SINK_FRAME  # (Lk,)
    k_chunk = torch.div(k_frames, block, rounding_mode="floor")  # (Lk,)
    allowed = k_chunk[None, :] <= q_chunk[:, None]  # (Lq, Lk)
    if window is not None:
        allowed &= k_frames[None, :] >= (q_chunk * block - window)[:, None]
    allowed |= sink[None, :]
    return None if bool(allowed.all()) else allowed


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, ops) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = ops.Linear(dim, 3 * dim)
        self.proj = ops.Linear(dim, dim)
        head_dim = dim // heads
        self.q_norm = ops.LayerNorm(head_dim, elementwise_affine=False, eps=1e-6)
        self.k_norm = ops.LayerNorm(head_dim, elementwise_affine=False, eps=1e-6)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, D) -> q, k, v each (B, H, L, Dh), q and k normalised per head."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        return self.q_norm(q), self.k_norm(k), v

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D) frame tokens
        rope: tuple[torch.Tensor, torch.Tensor],  # cos, sin (L, Dh/2) at the tokens' frames
        sink: tuple[torch.Tensor, torch.Tensor],  # sink keys/values (B, H, S, Dh)
        past: tuple[torch.Tensor, torch.Tensor] | None,  # cached keys/values (B, H, Lc, Dh)
        mask: torch.Tensor | None,  # (L, S + Lc + L) bool
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = self.project(x)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)  # cached keys are stored rotated
        keys = [sink[0], k] if past is None else [sink[0], past[0], k]
        values = [sink[1], v] if past is None else [sink[1], past[1], v]
        out = F.scaled_dot_product_attention(
            q, torch.cat(keys, dim=2), torch.cat(values, dim=2), attn_mask=mask
        )  # (B, H, L, Dh)
        return self.proj(rearrange(out, "b h l d -> b l (h d)")), (k, v)
