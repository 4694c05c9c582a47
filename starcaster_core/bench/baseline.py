"""The sliding-window bidirectional baseline (the Hallo / EchoMimic way), for comparison only.

Windows of `window` frames overlap by `overlap` frames; every window is denoised from noise with
full (bidirectional) attention inside it, and at every step the overlapping frames are replaced
by the previous window's result noised to the current level (inpainting-style motion frames).
Same denoiser, same steps: only the scheduling differs from the autoregressive sampler.
"""

from __future__ import annotations

import torch

from ..conditioning import Conditioning
from ..flow import add_noise, euler_step


@torch.no_grad()
def sliding_window_video(model, cond: Conditioning, schedule: torch.Tensor, *, window: int, overlap: int,
                         generator: torch.Generator) -> torch.Tensor:
    cfg = model.config
    n_frames, batch = cond.frames, cond.batch
    assert 0 <= overlap < window, "overlap must be smaller than the window"
    out: list[torch.Tensor] = []  # (B, C, 1, H, W) finished frames
    while len(out) < n_frames:
        begin = max(0, len(out) - overlap)  # window starts on the last `overlap` finished frames
        end = min(begin + window, n_frames)
        size, known = end - begin, len(out) - begin
        prior = torch.cat(out[begin:], dim=2) if known else None  # (B, C, known, H, W)
        noise = torch.randn(batch, cfg.channels, size, cfg.height, cfg.width, generator=generator)
        x = noise.clone()
        window_cond = model.with_reference_views(cond.frame_slice(begin, end), noise.device)  # warped once per window
        for i in range(len(schedule) - 1):
            t, t_next = float(schedule[i]), float(schedule[i + 1])
            if known:  # motion frames: the finished frames at this step's noise level
                tt = torch.full((batch, known), t)
                x[:, :, :known] = add_noise(prior, noise[:, :, :known], tt)
            x0 = model(x, torch.full((batch, size), t), window_cond, frame_offset=begin, block=size)
            x = euler_step(x, x0, t, t_next) if t_next > 0 else x0
        out.extend(x[:, :, known:].split(1, dim=2))
    return torch.cat(out, dim=2)
