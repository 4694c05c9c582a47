"""Training the head-pose prior (model/pose_prior.py) on the data's own head poses.

Runs after the denoiser's stages, on every process alike (same seed, same data: the same
weights on every rank), and only when the data has `pose` tracks and the config a prior. It
takes seconds: the prior is a small 1D network over (T, 3) tracks. Also a command, to give an
existing checkpoint a prior (or a new one) without touching its other weights:

    python -m starcaster_core.train.pose --checkpoint in.safetensors --data data/world --out out.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import PRESETS
from ..model import STARCaster
from ..model.pose_prior import WINDOW
from .config import TrainConfig
from .data import Sequences, load_sequences

log = logging.getLogger(__name__)
DEFAULT_WIDTH = 64  # the prior's width when neither the checkpoint nor its preset has one


def train_pose_prior(model: STARCaster, talking: Sequences, steps: int, batch: int = 64, lr: float = 2e-3,
                     seed: int = 0, device: torch.device | str = "cpu") -> list[float]:
    """Trains `model.pose_prior` in place on random windows of the talking sequences' `pose`;
    returns the loss of every step (empty when there is nothing to train)."""
    prior, pose = model.pose_prior, talking.extra.get("pose")
    if prior is None or pose is None or steps <= 0:
        log.info("no head-pose prior trained: %s", "the config has none" if prior is None else
                 "the data has no pose tracks" if pose is None else "0 steps")
        return []
    n_seq, n_frames = pose.shape[:2]
    window = min(WINDOW, n_frames)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    prior.train()
    losses, t0 = [], time.time()
    for _ in range(steps):
        idx = torch.randint(n_seq, (batch,), generator=g)
        start = torch.randint(n_frames - window + 1, (batch,), generator=g)
        win = start[:, None] + torch.arange(window)[None]  # (B, W)
        rows = idx[:, None]
        loss = prior.loss(pose[rows, win].to(device), talking.audio[rows, win].to(device), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    prior.eval()
    log.info("head-pose prior: %d steps in %.1f s, loss %.3f -> %.3f (mean of the last 50)", steps,
             time.time() - t0, sum(losses[:50]) / len(losses[:50]), sum(losses[-50:]) / len(losses[-50:]))
    return losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a STARCaster .safetensors")
    p.add_argument("--data", required=True, help="a dataset with talking/ sequences that hold pose tracks")
    p.add_argument("--out", required=True, help="where to write the checkpoint with its prior")
    p.add_argument("--width", type=int, default=0,
                   help=f"prior width (0: the checkpoint's, else its preset's, else {DEFAULT_WIDTH})")
    p.add_argument("--steps", type=int, default=TrainConfig.pose_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    old = load_checkpoint(args.checkpoint)
    preset = PRESETS.get(old.config.name)
    width = args.width or old.config.pose_prior or (preset.pose_prior if preset else 0) or DEFAULT_WIDTH
    model = STARCaster(dataclasses.replace(old.config, pose_prior=width))
    kept = {k: v for k, v in old.state_dict().items() if not k.startswith("pose_prior.")}  # a new prior
    missing, _ = model.load_state_dict(kept, strict=False)
    assert all(k.startswith("pose_prior.") for k in missing), f"unexpected missing weights {missing[:3]}"
    talking = load_sequences(Path(args.data) / "talking", model.config)
    if not train_pose_prior(model, talking, args.steps, seed=args.seed):
        raise SystemExit(f"no head-pose prior trained: {args.data}/talking has no pose tracks (or --steps is 0)")
    save_checkpoint(model.eval(), args.out, {"pose_prior_steps": str(args.steps), "pose_prior_data": args.data})
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
