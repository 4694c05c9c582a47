"""Training configuration: one frozen dataclass, set from the command line."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

from ..config import PRESETS, ModelConfig

Stage = Literal["motion", "sync", "views"]
STAGES: tuple[Stage, ...] = ("motion", "sync", "views")
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "demo"
    model: str = ""  # JSON object of ModelConfig fields to change from the preset, e.g. '{"reference_warp": true}'
    data: str = "data/world"  # shards written by `python -m starcaster_core.synthetic` (or your own)
    out: str = "runs/demo"
    motion_steps: int = 400  # stage 1: identity-aware motion (audio mostly dropped)
    sync_steps: int = 600  # stage 2: audio sync with the lip-reading loss
    views_steps: int = 1000  # stage 3: orbit sequences as videos, mixed with talking clips
    lip_reader_steps: int = 600  # the lip reader is trained (then frozen) before stage 2
    batch: int = 6
    clip_frames: int = 16  # longer than the default inference context + chunk (8 + 4)
    train_window: int = 0  # 1: training passes and rollouts attend back context_frames, as the sampler (0: all)
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    t_grid: float = 0.75  # share of chunks at the noise levels 1, .75, .5, .25 (the rest uniform)
    t_min: float = 0.5  # the velocity loss weighs x0 errors by 1 / max(t, t_min)^2
    identity_noise: float = 0.15  # std of the noise on the identity, in units of the prior std
    identity_dropout: float = 0.1
    portrait_share: float = 1.0  # share of clips whose portrait is the data's own (when it has them), not a frame
    portrait_when_turned: int = 0  # 1: ...and every clip whose camera is turned from the front (train/data.py)
    pose_in_camera: int = 0  # 1: cameras relative to the data's head poses, as generate hands them (train/data.py)
    reference_dropout: float = 0.3  # reference_frame models: share of clips trained without the portrait
    reference_jitter: float = 0.0  # ...and a random shift (x frame size), turn (x 100 deg) and zoom of it
    audio_dropout_motion: float = 0.7  # stage 1 learns motion mostly without the audio
    audio_dropout: float = 0.1
    clean_context: float = 0.5  # share of clips whose early chunks are (almost) clean, as at inference
    self_forcing: float = 0.3  # share of clips whose context is the model's own rollout (stage 2+)
    rollout_steps: int = 2  # Euler steps per chunk of that rollout
    sampler_forcing: float = 0.0  # share of clips noised from the model's own estimate from pure noise (objective.py)
    lip_weight: float = 0.5
    lip_reader: Literal["conv", "linear"] = "conv"  # the lip reader's kind (train/lip_reader.py)
    lip_max_t: float = 1.0  # the lip-reading loss scores estimates made at noise levels up to this only
    lip_reader_noise: float = 0.0  # the lip reader trains on crops with pixel noise of std up to this (robust features)
    lip_reader_robust: float = 0.0  # L2 radius of the worst-case crops the lip reader trains on (0: none)
    lip_reader_centre: int = 0  # 1: the lip reader reads each crop less its mean colour (a tint reads as nothing)
    lip_blur: float = 0.0  # sigma (crop pixels) of the low-pass the lip reader reads through (lip_reader.py; 0: none)
    edge_weight: float = 0.0  # weight of the gradient-difference loss of the clean estimate (objective.edge_loss)
    mouth_boxes: int = 1  # 1: crop and weigh each frame's mouth at the data's `mouth_box` (if any); 0: the fixed box
    mouth_weight: float = 0.0  # stage 2 on: extra flow-loss weight inside the mouth box (0: none)
    mouth_steps: int = 0  # after the last stage: steps of the mouth branch alone (train/mouth_stage.py)
    mouth_stage_weight: float = 1000.0  # ...its extra loss weight in each frame's mouth box (the data's own boxes)
    mouth_lr: float = 2e-3  # ...its peak learning rate
    ema: float = 0.0  # decay of an exponential moving average of the weights, saved as the model (0: off)
    encoder_weight: float = 1.0
    orbit_share: float = 0.4  # share of orbit clips in stage 3 batches
    pose_steps: int = 4000  # after the last stage run: steps of the head-pose prior (train/pose.py; 0: none)
    precision: Precision = "bf16"
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 250
    val_every: int = 0  # every so many steps, score held-out world clips (train.validate; 0: never)
    val_clips: int = 3
    val_seconds: float = 4.0
    keep_best: str = ""  # a validation metric (e.g. lipsync_r): also save best.safetensors, best of the last stage
    threads: int = 0  # torch threads per process (0: torch's default)
    save_every_rank: int = 0  # 1: every process also saves <stage>.rank<r>.safetensors (DDP checks)
    until: Stage = "views"  # train up to the end of this stage

    def __post_init__(self) -> None:
        from ..eval.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER

        assert not self.keep_best or (self.val_every and self.keep_best in HIGHER_IS_BETTER + LOWER_IS_BETTER), (
            f"keep_best needs val_every > 0 and one of {HIGHER_IS_BETTER + LOWER_IS_BETTER}, got {self.keep_best!r}"
        )

    def model_config(self) -> ModelConfig:
        """The preset with `model`'s changes: what the run trains (and its checkpoints store)."""
        changes = json.loads(self.model) if self.model else {}
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        if not isinstance(changes, dict) or set(changes) - known:
            raise ValueError(f"--model must be a JSON object of ModelConfig fields; unknown: "
                             f"{sorted(set(changes) - known) if isinstance(changes, dict) else changes!r}")
        return dataclasses.replace(PRESETS[self.preset], **changes)

    def stage_end(self, stage: Stage) -> int:
        ends = {"motion": self.motion_steps, "sync": self.motion_steps + self.sync_steps}
        return ends.get(stage, self.total_steps)

    def stage_of(self, step: int) -> Stage:
        if step < self.motion_steps:
            return "motion"
        return "sync" if step < self.motion_steps + self.sync_steps else "views"

    @property
    def total_steps(self) -> int:
        return self.motion_steps + self.sync_steps + self.views_steps

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
