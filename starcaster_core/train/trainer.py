"""The staged training loop (nanoGPT-style: one readable loop), single process or torchrun/DDP."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..model import STARCaster
from .config import TrainConfig
from .data import ClipSampler, load_sequences
from .lip_reader import CROP, LipReader, adversarial_crops, lip_reader_loss, mouth_crops
from .mouth_stage import train_mouth_branch
from .objective import Objective, mouth_boxes
from .pose import train_pose_prior
from .validate import Validator, improves

log = logging.getLogger(__name__)


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the torchrun process group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, world, device


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr_ratio * lr at the end of the last stage
    (`total_steps`, whichever stage a run stops at: separate stage commands follow one schedule)."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    frac = (step - tc.warmup) / max(1, tc.total_steps - tc.warmup)
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def new_reader(tc: TrainConfig, n_mels: int) -> LipReader:
    """An untrained lip reader of the run's kind."""
    return LipReader(n_mels, blur=tc.lip_blur, kind=tc.lip_reader, centre=bool(tc.lip_reader_centre))


def train_lip_reader(sampler: ClipSampler, tc: TrainConfig, device: torch.device, attempts: int = 3) -> LipReader:
    """Train the lip reader on ground-truth mouth crops (same seeds on every rank), then freeze
    it. A reader whose features collapsed (every mouth reads the same: the lip loss would be 0,
    stage 2 unsupervised) is trained again from the next seed."""
    for attempt in range(attempts):
        reader, spread = _lip_reader_from(sampler, tc, device, tc.seed + 17 + attempt)
        if spread > 1e-6:
            return reader.eval().requires_grad_(False)
        log.warning("lip reader %d: its features collapsed (spread %.2g); training it again", attempt, spread)
    raise RuntimeError(f"the lip reader's features collapsed in {attempts} attempts: every mouth crop reads the "
                       "same, so the lip-reading loss would be 0; check the mouth boxes of the data or raise "
                       "--lip-reader-steps")


def _lip_reader_from(sampler: ClipSampler, tc: TrainConfig, device: torch.device, seed: int):
    """(reader trained from `seed`, spread of its features over the last batch's crops)."""
    with torch.random.fork_rng(devices=[]):  # its init must not depend on what ran before
        torch.manual_seed(seed)
        reader = new_reader(tc, sampler.config.audio_mels).to(device)
    opt = torch.optim.AdamW(reader.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(tc.lip_reader_steps):
        batch = sampler.sample(tc.batch, 0.0, g)
        frames = batch["frames"].flatten(0, 1).to(device)  # (B * T, 3, H, W)
        boxes = mouth_boxes(batch, tc)
        boxes = boxes.flatten(0, 1).to(device) if boxes is not None else None
        opening = batch["mouth"].flatten(0, 1).to(device) if "mouth" in batch else None
        crops = mouth_crops(frames, boxes)  # (N, 3, CROP, CROP)
        if tc.lip_reader_noise > 0:  # features noise does not move (measured: stage 2 drew coarser patterns)
            std = torch.rand(crops.shape[0], 1, 1, 1, generator=g) * tc.lip_reader_noise  # (N, 1, 1, 1)
            crops = crops + (std * torch.randn(crops.shape, generator=g)).to(device)
        audio = batch["audio"].flatten(0, 1).to(device)  # (N, K, M)
        if tc.lip_reader_robust > 0:  # train on the crops it reads worst (lip_reader.adversarial_crops),
            radius = tc.lip_reader_robust * min(1.0, 2 * step / tc.lip_reader_steps)  # the radius grown from 0
            crops = adversarial_crops(reader, crops, audio, opening, radius)
        loss = lip_reader_loss(reader, crops, audio, opening)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log.info("lip reader step %d loss %.4f", step, loss.item())
    with torch.no_grad():
        spread = float(reader(mouth_crops(frames, boxes))[0].var(dim=0).mean()) if tc.lip_reader_steps else 1.0
    return reader, spread


def save_state(path: Path, model: STARCaster, reader: LipReader, opt: torch.optim.Optimizer, step: int,
               tc: TrainConfig, ema: AveragedModel | None = None) -> None:
    """Resume state as safetensors (no pickle): model, lip reader, AdamW moments, EMA, step."""
    save_checkpoint(model, path.with_name("last.safetensors"), {"step": str(step), "train_config": tc.to_json()})
    tensors = {f"reader.{k}": v.detach().cpu().contiguous() for k, v in reader.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    for i, p in enumerate(p for group in opt.param_groups for p in group["params"]):
        for k, v in opt.state.get(p, {}).items():
            value = torch.as_tensor(v).detach().cpu().contiguous()
            tensors[f"opt.{i}.{k}"] = value.reshape(-1) if k == "step" else value
    save_file(tensors, str(path), metadata={"step": str(step), "train_config": tc.to_json(), "crop": str(CROP)})


def load_state(path: Path, model: STARCaster, reader: LipReader, opt: torch.optim.Optimizer,
               ema: AveragedModel | None = None) -> int:
    model.load_state_dict(load_checkpoint(path.with_name("last.safetensors")).state_dict())
    with safe_open(str(path), framework="pt") as f:
        step = int(f.metadata()["step"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    reader.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("reader.")})
    averaged = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if ema is not None and averaged:  # a run saved without --ema starts its average at the next step
        ema.load_state_dict(averaged)
    params = [p for group in opt.param_groups for p in group["params"]]
    for i, p in enumerate(params):
        state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if state:
            state["step"] = state["step"].reshape(())
            opt.state[p] = {k: v.to(p.device) for k, v in state.items()}
    return step


def best_score(out: Path, key: str) -> float | None:
    """The `key` score `best.safetensors` in `out` was kept for (None: no such file or score yet)."""
    path = out / "best.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        value = (f.metadata() or {}).get(key)
    return None if value is None else float(value)


def log_losses(log_file, stage: str, losses: list[float], first_step: int, every: int) -> None:
    """Rows of log.jsonl for a stage trained after the loop (the mouth stage, the head-pose prior):
    every `every`-th step's loss, under the stage's name, numbered on from `first_step`."""
    for i in range(0, len(losses), every):
        log_file.write(json.dumps({"step": first_step + i, "stage": stage, stage: losses[i]}) + "\n")


def train(tc: TrainConfig) -> Path:
    """Runs every stage from the last saved step; returns the final checkpoint's path."""
    rank, world, device = setup_distributed()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    config = tc.model_config()

    # 1. data: talking sequences, plus orbit sequences for stage 3 when present
    root = Path(tc.data)
    talking = load_sequences(root / "talking", config)
    orbit = load_sequences(root / "orbit", config) if (root / "orbit" / "index.json").is_file() else None
    sampler = ClipSampler(talking, orbit, config, tc.clip_frames, tc.portrait_share, tc.portrait_when_turned,
                          bool(tc.pose_in_camera))

    # 2. the model (same init on every rank), its identity prior, the optimiser
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        model = STARCaster(config).to(device)
    stats = sampler.identity_stats()
    if stats is not None:
        model.identity_mean.copy_(stats[0])
        model.identity_std.copy_(stats[1])
    if model.denoiser.mouth is not None:  # the mouth branch trains in its own stage, after these (mouth_stage.py)
        model.denoiser.mouth.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=0.01, betas=(0.9, 0.99))
    state_path = out / "state.safetensors"
    reader = new_reader(tc, config.audio_mels).to(device)
    if config.frame_prior and not state_path.is_file():
        mse = model.denoiser.fit_prior(sampler.prior_pairs())
        log.info("frame prior fitted by least squares: mse %.4f", mse)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True) if tc.ema else None
    start = load_state(state_path, model, reader, opt, ema) if state_path.is_file() else 0
    if start == 0:
        reader = train_lip_reader(sampler, tc, device)
    reader.eval().requires_grad_(False)
    objective = Objective(model)
    if world > 1:  # all-reduces gradients during backward; stages leave some weights unused
        objective = torch.nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)

    # 3. the loop: each rank draws its own batches (seeded by rank), DDP averages gradients
    g = torch.Generator().manual_seed(tc.seed * 1000 + rank * 7919 + start)
    log_file = (out / "log.jsonl").open("a") if rank == 0 else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    validator = Validator(tc.val_clips, tc.val_seconds, device, config) if tc.val_every and rank == 0 else None
    best_key = f"val_{tc.keep_best}"
    best = best_score(out, best_key) if tc.keep_best else None  # a resumed run keeps its best so far
    t0 = time.time()
    end = tc.stage_end(tc.until)
    if end < tc.total_steps and rank == 0:  # the cosine spans every stage's steps, trained or not
        log.warning("the learning-rate schedule spans %d steps (motion + sync + views) and this run stops at "
                    "step %d, with the rate at %.0f%% of its peak, not annealed; to end annealed here, set the "
                    "later stages' steps to 0", tc.total_steps, end, 100 * lr_at(end - 1, tc) / tc.lr)
    for step in range(start, end):
        stage = tc.stage_of(step)
        batch = sampler.sample(tc.batch, tc.orbit_share if stage == "views" else 0.0, g)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        with autocast:
            loss, parts = objective(batch, tc, stage, g, reader)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        if log_file is not None and (step % tc.log_every == 0 or step == end - 1):
            row = {"step": step, "stage": stage, "lr": lr_at(step, tc), "seconds": round(time.time() - t0, 1), **parts}
            log_file.write(json.dumps(row) + "\n")
            log_file.flush()
            log.info("step %d %s %s", step, stage, {k: round(v, 4) for k, v in parts.items()})
        if validator is not None and ((step + 1) % tc.val_every == 0 or step == end - 1):
            validated = ema.module if ema is not None else model
            scores = validator(validated)
            log_file.write(json.dumps({"step": step, "stage": stage, **scores}) + "\n")
            log_file.flush()
            log.info("step %d validation %s", step, scores)
            if tc.keep_best and stage == tc.until and improves(tc.keep_best, scores[best_key], best):
                best = scores[best_key]
                save_checkpoint(validated, out / "best.safetensors",
                                {"train_config": tc.to_json(), "steps": str(step + 1), best_key: str(best)})
        if rank == 0 and ((step + 1) % tc.checkpoint_every == 0 or step == end - 1):
            save_state(state_path, model, reader, opt, step + 1, tc, ema)
    final = out / f"{tc.until}.safetensors"
    if ema is not None:  # the averaged weights are the model (smoother than the last step's)
        model = ema.module
    # the mouth stage and the head-pose prior: every rank alike (same seed and data), outside the DDP model
    mouth_losses = train_mouth_branch(model, sampler, tc, device)
    if rank == 0 and mouth_losses:
        log_losses(log_file, "mouth", mouth_losses, end, tc.log_every)
        if validator is not None:
            row = {"step": end + len(mouth_losses) - 1, "stage": "mouth", **validator(model)}
            log_file.write(json.dumps(row) + "\n")
        log_file.flush()
    pose_losses = train_pose_prior(model, talking, tc.pose_steps, seed=tc.seed, device=device)
    if model.pose_prior is not None and not pose_losses:
        model.drop_pose_prior()  # untrained: the checkpoint carries none
    if rank == 0 and pose_losses:
        log_losses(log_file, "pose", pose_losses, end + len(mouth_losses), tc.log_every)
        log_file.flush()
    if rank == 0:
        save_checkpoint(model, final, {"train_config": tc.to_json(), "steps": str(end)})
        save_file({k: v.contiguous() for k, v in reader.state_dict().items()}, str(out / "lip_reader.safetensors"))
        from .plot import plot_log

        plot_log(out / "log.jsonl", out / "loss.png")
    if tc.save_every_rank:
        save_checkpoint(model, out / f"{tc.until}.rank{rank}.safetensors")
    if dist.is_initialized():
        dist.barrier()
    return final
