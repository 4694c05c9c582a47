"""Rectified-flow (flow matching) schedule, noising, training target and Euler step.

x_t = (1 - t) x0 + t e with e ~ N(0, I); the velocity is v = e - x0 and sampling integrates
dx/dt = v from t = 1 (noise) to t = 0 (data). The network predicts x0 (see ModelConfig
.prediction); the loss is scored on the velocity, v_pred = (x_t - x0_pred) / t.
"""

from __future__ import annotations

import torch


def timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """Decreasing grid 1 -> 0 of steps + 1 points; shift > 1 spends more steps near t = 1."""
    assert steps >= 1, f"steps must be >= 1, got {steps}"
    assert shift > 0, f"shift must be > 0, got {shift}"
    t = torch.linspace(1.0, 0.0, steps + 1)
    return shift * t / (1 + (shift - 1) * t)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0, noise: (B, C, T, H, W); t: (B, T) -> x_t."""
    tt = t[:, None, :, None, None]  # (B, 1, T, 1, 1)
    return (1 - tt) * x0 + tt * noise


def velocity_loss(
    x0_pred: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, t_min: float = 0.05,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared velocity error per frame: (B, T).

    v_pred - v = (x_t - x0_pred) / t - (x_t - x0) / t = (x0 - x0_pred) / t; t is clamped at
    t_min so nearly clean frames do not dominate. `pixel_weight` (B, T, H, W), mean 1 per
    frame, weighs regions of a frame (the mouth) above the rest.
    """
    sq = (x0_pred - x0).pow(2)  # (B, C, T, H, W)
    if pixel_weight is not None:
        sq = sq * pixel_weight[:, None]
    err = sq.mean(dim=(1, 3, 4))  # (B, T)
    return err / t.clamp(min=t_min).pow(2)


def target_mean(per_frame: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of a per-frame loss (B, T) over the target frames (weight (B, T): 1 target, 0 context)."""
    return (per_frame * weight).sum() / weight.sum().clamp(min=1)


def euler_step(x_t: torch.Tensor, x0_pred: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """One Euler step of dx/dt = v from t to t_next, with v = (x_t - x0_pred) / t."""
    v = (x_t - x0_pred) / t
    return x_t + (t_next - t) * v
