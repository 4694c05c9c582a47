"""The mouth stage: the mouth branch (model/mouth_branch.py) trained on its own, the rest frozen.

Runs after the last stage, before the head-pose prior, on every process alike (same seed, same
data: the same weights on every rank). Its loss is the stages' flow loss scored on the clean
estimate (with the edge loss, without the lip-reading loss or self-forcing rollouts) on talking
clips, weighed up `mouth_stage_weight` times in each frame's own mouth box (the data's boxes,
whatever `mouth_boxes` says for the lip reader). Only the branch learns, so what it learns is
what the finished transformer's estimate lacks in the mouth's window: the transformer draws the
portrait's shut mouth (README, Status, sessions 17-18), and the branch, reading that estimate,
the turned portrait and the speech, is to add the opening. Measured on the demo world (session
20): it does at the noise levels it trains at, but the sampled videos show it faintly. Trained
with the transformer instead, the branch left the window showing the portrait or a faint mouth
(session 19).
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

from ..model import STARCaster
from .config import TrainConfig
from .data import ClipSampler
from .objective import batch_loss

log = logging.getLogger(__name__)


def mouth_stage_loss(model: STARCaster, batch: dict, tc: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """The stage's loss of one batch: the flow loss of the clean estimate (not the velocity:
    every noise level weighs alike, where the stages weigh nearly clean frames up to 4 times),
    `mouth_stage_weight` times more in each frame's own mouth box, plus the edge loss."""
    stage_tc = dataclasses.replace(tc, lip_weight=0.0, self_forcing=0.0, mouth_boxes=1, t_min=1.0,
                                   mouth_weight=tc.mouth_stage_weight)
    return batch_loss(model, batch, stage_tc, "sync", g)[0]


def train_mouth_branch(model: STARCaster, sampler: ClipSampler, tc: TrainConfig,
                       device: torch.device | str = "cpu") -> list[float]:
    """Trains `model.denoiser.mouth` in place for `tc.mouth_steps` steps (the learning rate
    warmed up and annealed over them), every other weight frozen; returns the loss of every step
    (empty when there is nothing to train). The model's other weights are left trainable again."""
    branch = model.denoiser.mouth
    if branch is None or tc.mouth_steps <= 0:
        log.info("no mouth stage: %s", "the config has no mouth branch" if branch is None else "0 steps")
        return []
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.requires_grad_(False)
    branch.requires_grad_(True)
    opt = torch.optim.AdamW(branch.parameters(), lr=tc.mouth_lr, weight_decay=0.01, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.mouth_lr, total_steps=tc.mouth_steps, pct_start=0.1)
    g = torch.Generator().manual_seed(tc.seed + 29)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    losses, t0 = [], time.time()
    for _ in range(tc.mouth_steps):
        batch = sampler.sample(tc.batch, 0.0, g)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with autocast:
            loss = mouth_stage_loss(model, batch, tc, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(branch.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    for p in trainable:
        p.requires_grad_(True)
    log.info("mouth stage: %d steps in %.1f s, loss %.4f -> %.4f (mean of the first / last 25)", tc.mouth_steps,
             time.time() - t0, sum(losses[:25]) / len(losses[:25]), sum(losses[-25:]) / len(losses[-25:]))
    return losses
