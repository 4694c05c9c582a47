"""Training the meters on fresh, random ground-truth renders of the synthetic world.

Every training frame draws its own identity, expression, head pose and camera (``RenderRanges``,
covering the world's data and the camera presets: orbits, arcs, nods, zooms) from one seeded
``torch.Generator``; a pool is rendered up front and sampled with light blur / noise
augmentation (so the meters also read slightly soft generated frames). A held-out set from a
disjoint seed measures the meters' accuracy, which is stored with the weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from kornia.filters import gaussian_blur2d

from ..synthetic.identity import IdentityParams
from ..synthetic.render import render_frames
from .geometry import view_angles
from .meters import LOG_DISTANCE_SCALE, VIEW_SCALE_DEG, MeterConfig, Meters, save_meters

log = logging.getLogger(__name__)

HELDOUT_SEED_OFFSET = 10_000  # the accuracy set is drawn from seed + this
MOUTH_WEIGHTS = (1.0, 0.1, 0.5)  # jaw, width, blink: the width is hard to see and must not crowd out the jaw


@dataclass(frozen=True)
class RenderRanges:
    """Distribution of the random training renders (degrees; distance is a scale)."""

    camera_yaw: float = 50.0  # uniform +-
    camera_pitch: float = 18.0
    camera_roll_std: float = 4.0  # on a `rolled_share` of frames, else 0
    rolled_share: float = 0.2
    distance: tuple[float, float] = (0.65, 1.5)  # log-uniform
    frontal_share: float = 0.25  # frames with the neutral camera (0, 0, 0, 1)
    head_std: tuple[float, float, float] = (10.0, 6.0, 4.0)  # yaw, pitch, roll noise
    head_offset: tuple[float, float, float] = (8.0, 5.0, 3.0)  # uniform +- per frame
    head_limit: tuple[float, float, float] = (30.0, 18.0, 12.0)
    still_share: float = 0.25  # frames with the head pose (0, 0, 0) (orbit clips)
    closed_share: float = 0.25  # frames with the jaw shut
    blink_share: float = 0.3  # frames with a partial or full blink


@dataclass(frozen=True)
class MeterTraining:
    steps: int = 3000
    batch: int = 64
    pool: int = 32768  # frames rendered up front (400 MB as uint8)
    heldout: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    blur_share: float = 0.3  # augmentation: Gaussian blur, sigma up to 1 px
    noise_share: float = 0.3  # augmentation: pixel noise, std up to 0.03


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def random_scene(n: int, g: torch.Generator, ranges: RenderRanges = RenderRanges()) -> dict[str, torch.Tensor]:
    """Random per-frame world parameters: identity (N, D), expression (N, 3), pose (N, 3), camera (N, 4)."""
    r = ranges
    identity = torch.stack([IdentityParams.sample(g).identity_vector() for _ in range(n)])  # (N, D)

    # 1. expression: jaw, width (only when open, as the lip-sync rule makes it), blink
    jaw = torch.rand(n, generator=g) * (torch.rand(n, generator=g) >= r.closed_share)
    width = _uniform(n, -1.0, 1.0, g) * (3.0 * jaw).clamp(max=1.0)
    blink = torch.rand(n, generator=g) * (torch.rand(n, generator=g) < r.blink_share)
    expression = torch.stack([jaw, width, blink], -1)  # (N, 3)

    # 2. head pose: smooth-noise-like spread plus a per-clip-like offset, or a still head
    std, off, lim = (torch.tensor(v) for v in (r.head_std, r.head_offset, r.head_limit))
    pose = torch.randn(n, 3, generator=g) * std + (2 * torch.rand(n, 3, generator=g) - 1) * off
    pose = torch.maximum(torch.minimum(pose, lim), -lim)
    pose = pose * (torch.rand(n, 1, generator=g) >= r.still_share)

    # 3. camera: uniform views, some rolled, log-uniform distances, a share exactly frontal
    roll = torch.randn(n, generator=g) * r.camera_roll_std * (torch.rand(n, generator=g) < r.rolled_share)
    lo, hi = math.log(r.distance[0]), math.log(r.distance[1])
    camera = torch.stack([_uniform(n, -r.camera_yaw, r.camera_yaw, g), _uniform(n, -r.camera_pitch, r.camera_pitch, g),
                          roll, torch.exp(_uniform(n, lo, hi, g))], -1)  # (N, 4)
    frontal = torch.rand(n, generator=g) < r.frontal_share
    camera[frontal] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return {"identity": identity, "expression": expression, "pose": pose, "camera": camera}


def render_pool(n: int, seed: int, size: int = 64, batch: int = 64,
                ranges: RenderRanges = RenderRanges()) -> dict[str, torch.Tensor]:
    """``n`` random frames (uint8 (N, 3, S, S)) with their parameters and targets."""
    g = torch.Generator().manual_seed(seed)
    scene = random_scene(n, g, ranges)
    frames = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(0, n, batch):
        j = min(n, i + batch)
        img = render_frames(scene["identity"][i:j], scene["expression"][i:j], scene["pose"][i:j],
                            scene["camera"][i:j], size=size, batch=j - i)
        frames[i:j] = (img * 255).round().to(torch.uint8)
    scene["frames"] = frames
    scene["view"] = view_angles(scene["camera"], scene["pose"])  # (N, 3) degrees
    return scene


def targets(pool: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    view = pool["view"][idx] / VIEW_SCALE_DEG
    log_dist = torch.log(pool["camera"][idx, 3:]) / LOG_DISTANCE_SCALE
    return {"mouth": pool["expression"][idx], "pose": torch.cat([view, log_dist], -1),
            "identity": pool["identity"][idx]}


def augment(frames: torch.Tensor, tc: MeterTraining, g: torch.Generator) -> torch.Tensor:
    """Blur and pixel noise on random shares of a (B, 3, H, W) 0..1 batch."""
    b = frames.shape[0]
    sigma = 0.3 + 0.7 * torch.rand(b, 1, generator=g)  # (B, 1) px
    blurred = gaussian_blur2d(frames, (5, 5), sigma.expand(b, 2))
    use_blur = (torch.rand(b, generator=g) < tc.blur_share).view(b, 1, 1, 1)
    out = torch.where(use_blur, blurred, frames)
    noise_std = 0.03 * torch.rand(b, 1, 1, 1, generator=g) * (torch.rand(b, 1, 1, 1, generator=g) < tc.noise_share)
    return (out + noise_std * torch.randn(out.shape, generator=g)).clamp(0.0, 1.0)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12))


@torch.no_grad()
def meter_accuracy(meters: Meters, pool: dict[str, torch.Tensor]) -> dict[str, float]:
    """Accuracy of the meters on a rendered pool (e.g. held-out renders)."""
    m = meters.measure(pool["frames"].float() / 255.0)
    expr, view = pool["expression"], pool["view"]
    open_mask = expr[:, 0] > 0.2
    return {
        "jaw_mae": float((m.mouth - expr[:, 0]).abs().mean()),
        "jaw_r": _pearson(m.mouth, expr[:, 0]),
        "width_mae_open": float((m.width - expr[:, 1])[open_mask].abs().mean()),
        "blink_mae": float((m.blink - expr[:, 2]).abs().mean()),
        "view_yaw_mae_deg": float((m.view[:, 0] - view[:, 0]).abs().mean()),
        "view_pitch_mae_deg": float((m.view[:, 1] - view[:, 1]).abs().mean()),
        "view_roll_mae_deg": float((m.view[:, 2] - view[:, 2]).abs().mean()),
        "distance_rel_mae": float(((m.distance - pool["camera"][:, 3]).abs() / pool["camera"][:, 3]).mean()),
        "identity_rmse": float((m.identity - pool["identity"]).pow(2).mean().sqrt()),
        "identity_rmse_chance": float((pool["identity"] - pool["identity"].roll(1, 0)).pow(2).mean().sqrt()),
    }


def train_meters(out_path: str | Path | None, steps: int = MeterTraining.steps, seed: int = 0,
                 pool: int = MeterTraining.pool, config: MeterConfig = MeterConfig()) -> dict:
    """Train the three meters; save them to ``out_path`` (if given); return the training info."""
    tc = MeterTraining(steps=steps, seed=seed, pool=pool)
    t0 = time.time()

    # 1. the data: a training pool and a held-out set from a disjoint seed
    train = render_pool(tc.pool, tc.seed, config.size)
    heldout = render_pool(tc.heldout, tc.seed + HELDOUT_SEED_OFFSET, config.size)
    t_render = time.time() - t0
    log.info("rendered %d + %d frames in %.0f s", tc.pool, tc.heldout, t_render)

    # 2. the meters and one optimiser over all three
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        meters = Meters(config)
    opt = torch.optim.AdamW(meters.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    g = torch.Generator().manual_seed(tc.seed + 1)
    weights = {"mouth": torch.tensor(MOUTH_WEIGHTS), "pose": torch.ones(4), "identity": torch.ones(1)}
    meters.train()
    for step in range(tc.steps):
        lr = tc.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / tc.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(tc.pool, (tc.batch,), generator=g)
        x = augment(train["frames"][idx].float() / 255.0, tc, g)  # (B, 3, S, S)
        y = targets(train, idx)
        losses = {name: (getattr(meters, name)(x)[1] - y[name]).pow(2).mul(weights[name]).mean()
                  for name in ("mouth", "pose", "identity")}
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == tc.steps - 1:
            log.info("meters step %d %s", step, {k: round(v.item(), 5) for k, v in losses.items()})
    meters.eval()

    # 3. held-out accuracy, stored with the weights
    accuracy = meter_accuracy(meters, heldout)
    info = {"training": asdict(tc), "ranges": asdict(RenderRanges()), "render_seconds": round(t_render, 1),
            "total_seconds": round(time.time() - t0, 1), "heldout_accuracy": accuracy}
    log.info("held-out accuracy %s", {k: round(v, 4) for k, v in accuracy.items()})
    if out_path is not None:
        save_meters(meters, out_path, info)
        log.info("saved meters to %s", out_path)
    return info
