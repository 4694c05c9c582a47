"""Block-causal spatio-temporal self-attention (SDPA) with identity sink tokens and a KV prefix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .embeddings import Rope, apply_rotary

Group = tuple[int, int, int, int]  # (query start, query end, key start, key end)


def attention_groups(q_frames: torch.Tensor, k_frames: torch.Tensor, block: int, window: int | None) -> list[Group]:
    """The block-causal rule as contiguous key ranges, one per chunk of queries.

    A query of frame f sees a key of frame g iff g's chunk (g // block) is not after f's chunk
    and, with a rolling window of W frames, g >= (start of f's chunk) - W. Keys (cache, then new
    frames) are sorted by frame, so the keys one chunk of queries sees form one range; attending
    to that range with no mask is exact and skips the masked-out work. The identity sink is
    attended by every query, outside these ranges.
    q_frames: (Lq,) sorted frame index of every query token; k_frames: (Lk,) sorted, of every key.
    """
    chunks = torch.div(q_frames, block, rounding_mode="floor")
    ids, counts = torch.unique_consecutive(chunks, return_counts=True)
    starts = ids * block
    k_lo = torch.zeros_like(starts) if window is None else torch.searchsorted(k_frames, starts - window)
    k_hi = torch.searchsorted(k_frames, starts + block)  # first key of a later chunk
    q_hi = torch.cumsum(counts, 0)
    q_lo = q_hi - counts
    return [tuple(int(v) for v in row) for row in torch.stack([q_lo, q_hi, k_lo, k_hi], 1)]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh)) v: q (B, H, Lq, Dh), k and v (B, H, Lk, Dh) -> (B, H, Lq, Dh).

    PyTorch SDPA, but for training in bf16/fp16 on a CPU, where the same product written out is
    faster: the CPU flash-attention kernel's backward is slow at these dtypes (demo training
    shapes, 2 threads, session 15: forward + backward over a clip's four query chunks 86 ms with
    SDPA, 48 ms written out; in fp32 SDPA is the faster, and on GPUs SDPA is the right kernel)."""
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16) and torch.is_grad_enabled() \
            and (q.requires_grad or k.requires_grad or v.requires_grad):
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, H, Lq, Lk)
        return scores.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


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

    def keys_values(self, x: torch.Tensor, rope: Rope) -> tuple[torch.Tensor, ...]:
        """(B, L, D) -> keys (rotated, as cached) and values, each (B, H, L, Dh)."""
        _, k, v = self.project(x)
        return apply_rotary(k, rope), v

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D) frame tokens
        rope: Rope,  # rotary segments (cos, sin) at the tokens' positions
        sink: tuple[torch.Tensor, torch.Tensor],  # sink keys/values (B, H, S, Dh)
        past: tuple[torch.Tensor, torch.Tensor] | None,  # cached keys/values (B, H, Lc, Dh)
        groups: list[Group],  # query chunks and the cache + new key range each sees
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = self.project(x)
        q, k = apply_rotary(q, rope), apply_rotary(k, rope)  # cached keys are stored rotated
        keys = k if past is None else torch.cat([past[0], k], dim=2)  # (B, H, Lc + L, Dh)
        values = v if past is None else torch.cat([past[1], v], dim=2)
        out = torch.cat([
            attend(
                q[:, :, q_lo:q_hi],
                torch.cat([sink[0], keys[:, :, k_lo:k_hi]], dim=2),
                torch.cat([sink[1], values[:, :, k_lo:k_hi]], dim=2),
            )  # (B, H, q_hi - q_lo, Dh)
            for q_lo, q_hi, k_lo, k_hi in groups
        ], dim=2)  # (B, H, L, Dh)
        return self.proj(rearrange(out, "b h l d -> b l (h d)")), (k, v)
