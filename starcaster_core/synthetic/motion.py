"""Non-audio-determined motion of the avatar: blinks and stochastic, speech-correlated head pose.

* Blinks: a Poisson process (about one blink every 3.5 s), each a smooth close-open of
  0.15-0.3 s (raised-cosine profile, peak 1 = eyes shut). Seeded by a ``torch.Generator``.
* Head pose (yaw, pitch, roll) in degrees: low-frequency noise (Gaussian-smoothed white noise at
  two time scales, ~1.2 s and ~0.35 s) whose amplitude grows with the smoothed speech energy
  (a talking head moves more than a silent one), plus small emphasis nods in pitch that follow
  syllable onsets, plus a constant per-sequence offset. Never a frozen head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class MotionStyle:
    """Amplitudes (degrees) of head motion: ``base`` when silent, ``base + gain`` when loud."""

    base: tuple[float, float, float] = (3.0, 2.0, 1.5)  # yaw, pitch, roll
    gain: tuple[float, float, float] = (8.0, 5.0, 3.0)
    offset: tuple[float, float, float] = (8.0, 5.0, 3.0)  # max |constant offset|
    nod: float = 4.0  # degrees of pitch per unit of energy rise
    slow_s: float = 1.2
    fast_s: float = 0.35
    blink_rate_hz: float = 0.28
    blink_s: tuple[float, float] = (0.15, 0.3)


def _gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooth (C, T) along T with a Gaussian of std ``sigma`` frames (replicate padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / max(sigma, 1e-3)) ** 2)
    kernel = kernel / kernel.sum()
    xp = F.pad(x.unsqueeze(0), (radius, radius), mode="replicate")  # (1, C, T + 2r)
    w = kernel.view(1, 1, -1).expand(x.shape[0], 1, -1)  # (C, 1, K)
    return F.conv1d(xp, w, groups=x.shape[0]).squeeze(0)  # (C, T)


def _smooth_noise(channels: int, n: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """(C, T) Gaussian-smoothed white noise with unit std in expectation (not per sample)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    raw = torch.randn(channels, n + 2 * radius, generator=generator)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / max(sigma, 1e-3)) ** 2)
    kernel = kernel / kernel.norm()  # unit-energy kernel keeps unit variance
    return F.conv1d(raw.unsqueeze(1), kernel.view(1, 1, -1)).squeeze(1)  # (C, T)


def blink_track(n_frames: int, fps: float, generator: torch.Generator,
                style: MotionStyle = MotionStyle()) -> torch.Tensor:
    """(T,) blink amount in 0..1 (1 = closed)."""
    out = torch.zeros(n_frames)
    t = float(torch.rand((), generator=generator)) * 2.0  # first blink within 2 s at most
    duration = n_frames / fps
    frame_t = (torch.arange(n_frames) + 0.5) / fps  # (T,)
    while t < duration:
        lo, hi = style.blink_s
        length = lo + (hi - lo) * float(torch.rand((), generator=generator))
        phase = ((frame_t - t) / length).clamp(0.0, 1.0)  # 0..1 inside the blink
        inside = (frame_t >= t) & (frame_t <= t + length)
        out = torch.maximum(out, inside * 0.5 * (1 - torch.cos(2 * math.pi * phase)))
        gap = -math.log(1.0 - float(torch.rand((), generator=generator)) * 0.999)
        t += length + 0.4 + gap / style.blink_rate_hz
    return out


def head_motion(energy: torch.Tensor, fps: float, generator: torch.Generator,
                style: MotionStyle = MotionStyle()) -> torch.Tensor:
    """(T, 3) head pose (yaw, pitch, roll) in degrees from a (T,) speech energy in 0..1."""
    n = energy.shape[0]
    e = energy.float().clamp(0.0, 1.0).view(1, n)  # (1, T)
    loud = _gaussian_smooth(e, 0.5 * fps)[0]  # (T,) energy over ~1 s
    slow = _smooth_noise(3, n, style.slow_s * fps, generator)  # (3, T)
    fast = _smooth_noise(3, n, style.fast_s * fps, generator)
    noise = 0.8 * slow + 0.6 * fast  # (3, T) unit std
    amp = torch.tensor(style.base).view(3, 1) + torch.tensor(style.gain).view(3, 1) * loud.view(1, n)
    pose = amp * noise  # (3, T)
    rise = (_gaussian_smooth(e, 0.06 * fps) - _gaussian_smooth(e, 0.4 * fps))[0]  # onsets > 0
    pose[1] += style.nod * rise.clamp(min=0.0)
    offset = (2 * torch.rand(3, generator=generator) - 1) * torch.tensor(style.offset)
    return (pose + offset.view(3, 1)).T.contiguous()  # (T, 3)
