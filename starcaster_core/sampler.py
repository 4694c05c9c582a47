"""The autoregressive sampler: chunk after chunk, few-step Euler flow, KV cache, CFG."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .conditioning import Conditioning
from .flow import add_noise, euler_step


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance scales; 1.0 = off for that signal.

    out = none + identity * (id_only - none) + audio * (full - id_only), where `full` has audio
    and identity, `id_only` has the identity but no audio, and `none` has neither.
    """

    audio: float = 1.0
    identity: float = 1.0

    def branches(self) -> list[tuple[bool, bool]]:
        """(use_audio, use_identity) of the model passes this guidance needs."""
        if self.identity != 1.0:
            return [(True, True), (False, True), (False, False)]
        if self.audio != 1.0:
            return [(True, True), (False, True)]
        return [(True, True)]

    def combine(self, preds: list[torch.Tensor]) -> torch.Tensor:
        if len(preds) == 1:
            return preds[0]
        full, id_only = preds[0], preds[1]
        base = id_only if len(preds) == 2 else preds[2] + self.identity * (id_only - preds[2])
        return base + self.audio * (full - id_only)


Callback = Callable[[dict], None]


def sample_chunks(
    model: torch.nn.Module,
    cond: Conditioning,
    schedule: torch.Tensor,
    *,
    generator: torch.Generator,
    chunk: int,
    context: int | None,
    guidance: Guidance = Guidance(),
    callback: Callback | None = None,
    interrupt: Callable[[], None] | None = None,
    use_cache: bool = True,
    device: torch.device | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Generate the video of `cond.frames` frames chunk by chunk; yields (start, x0 chunk).

    x0 chunks are (B, C, K, H, W) float32 in the model's space. With `use_cache` the clean
    frames before a chunk come from a KVCache filled by one pass after each chunk (at t = 0, or
    at the model's `context_noise` level); without
    it the whole context is recomputed every step (same result, slower: the benchmark's
    reference). Each chunk attends to `context` earlier frames (None: all); the identity sink
    is always kept. A cached context frame's keys were made when it saw its own context, so the
    exact recompute keeps depth * (context + chunk) frames: enough for every layer's
    receptive field.
    Every random draw comes from `generator` (on the CPU, so seeds repeat across devices).
    """
    cfg = model.config
    n_frames, batch = cond.frames, cond.batch
    assert chunk >= 1, f"chunk must be >= 1 frame, got {chunk}"
    assert context is None or context >= 0, f"context must be >= 0 frames, got {context}"
    assert schedule.ndim == 1 and schedule[0] > schedule[-1] and float(schedule[-1]) == 0.0, (
        "schedule must decrease to 0"
    )
    device = device or next(model.parameters()).device

    # 1. the conditioning of every guidance branch, stacked along the batch
    flags = guidance.branches()
    n_branch = len(flags)
    cond_all = Conditioning.cat([cond.with_flags(a, i) for a, i in flags]).to(device)
    cache = model.new_cache(context) if use_cache else None
    history: list[torch.Tensor] = []  # recompute mode: clean context frames (B*n, C, 1, H, W)
    keep = None if context is None else cfg.depth * (context + chunk)
    steps = len(schedule) - 1

    for start in range(0, n_frames, chunk):
        end = min(start + chunk, n_frames)
        size = end - start
        # 2. fresh noise for this chunk (drawn on the CPU generator, then moved)
        shape = (batch, cfg.channels, size, cfg.height, cfg.width)
        x = torch.randn(shape, generator=generator).to(device)
        if keep is not None:
            history = history[len(history) - min(len(history), keep):]
        ctx_start = start - len(history)
        # the portrait turned to the chunk's cameras once, not in every pass (warping models only)
        chunk_cond = cond_all.frame_slice(ctx_start if not use_cache else start, end)
        chunk_cond = model.with_reference_views(chunk_cond, device)

        # 3. few-step Euler denoising of the chunk, all guidance branches in one batch
        for i in range(steps):
            t, t_next = float(schedule[i]), float(schedule[i + 1])
            x_in = x.repeat(n_branch, 1, 1, 1, 1)  # (B * n, C, K, H, W)
            t_in = torch.full((batch * n_branch, size), t, device=device)
            if use_cache:
                pred = model(x_in, t_in, chunk_cond, frame_offset=start, cache=cache, block=chunk, window=context)
            else:
                ctx = torch.cat(history + [x_in], dim=2)  # (B * n, C, ctx + K, H, W)
                t_ctx = torch.cat([torch.full((batch * n_branch, start - ctx_start), cfg.context_noise, device=device),
                                   t_in], 1)
                pred = model(ctx, t_ctx, chunk_cond, frame_offset=ctx_start, block=chunk, window=context)
                pred = pred[:, :, -size:]
            x0 = guidance.combine(list(pred.chunk(n_branch, dim=0)))  # (B, C, K, H, W)
            if callback is not None:
                callback({"x": x, "i": i, "t": t, "denoised": x0, "start": start, "steps": steps})
            x = euler_step(x, x0, t, t_next) if t_next > 0 else x0
            if interrupt is not None:
                interrupt()

        # 4. rerun the finished chunk to write its keys/values into the cache: at t = 0, or at the
        #    model's context_noise level with fresh noise (trained so, the model leans less on
        #    its own context's flaws)
        level = cfg.context_noise
        kept = x if level == 0 else add_noise(x, torch.randn(shape, generator=generator).to(device),
                                              torch.full((batch, size), level, device=device))
        kept = kept.repeat(n_branch, 1, 1, 1, 1)  # (B * n, C, K, H, W)
        if use_cache:
            levels = torch.full((batch * n_branch, size), level, device=device)
            model(kept, levels, chunk_cond, frame_offset=start, cache=cache,
                  write_cache=True, block=chunk, window=context, estimate=False)
        else:
            history.extend(kept.split(1, dim=2))
        yield start, x


def sample_video(model: torch.nn.Module, cond: Conditioning, schedule: torch.Tensor, **kwargs) -> torch.Tensor:
    """All chunks of `sample_chunks` joined: (B, C, T, H, W)."""
    return torch.cat([x for _, x in sample_chunks(model, cond, schedule, **kwargs)], dim=2)
