"""Denoising probe: how well does a checkpoint estimate clean frames at each noise level?

    python -m starcaster_core.eval.probe --checkpoint runs/demo/views.safetensors --data data/heldout/talking

Teacher-forced, on clips of any dataset in the shard layout (`train.data`): the x0 error of
the first chunk from pure noise (what the sampler's first step sees: only the conditioning says
what to draw), of a chunk after clean context, at every level of the default 4-step grid, and
how much the output moves when the identity is switched off. Beside them the error of
predicting the data set's mean frame, the score of a model that ignores its conditioning, and
of copying the last context frame, the score of a model that only holds the picture still. This
is how we found that an earlier model drew the mean face from noise whatever the identity.

On 64x64 world clips it also prints the teacher-forced lip sync: the mouth opening the meter
reads on the x0 estimate of a chunk after clean context, correlated with its reading of the real
frames, at each level of the grid, with the audio on and off. It says how well the network draws
the mouth from the audio at the noise levels where the sampler decides what a chunk shows.
"""

from __future__ import annotations

import argparse
import logging

import torch
from einops import rearrange

from ..camera import pose_features
from ..conditioning import Conditioning
from ..flow import add_noise, timesteps
from ..train.data import ClipSampler, load_sequences
from .meters import load_meters
from .metrics import pearson

log = logging.getLogger("starcaster_core.eval.probe")


def clip_conditioning(batch: dict) -> Conditioning:
    """Audio, camera, (ground-truth) identity and portrait (another frame of the clip) of
    sampled clips, all switched on."""
    b, n = batch["frames"].shape[:2]
    return Conditioning(
        identity=batch["identity"], audio=batch["audio"], camera=pose_features(batch["camera"]),
        motion=torch.ones(b, n), audio_strength=torch.ones(b),
        use_audio=torch.ones(b, dtype=torch.bool), use_identity=torch.ones(b, dtype=torch.bool),
        reference=batch["portrait"],
    )


def teacher_forcing(denoiser, batch: dict, seed: int):
    """(clean clips x0 (B, C, T, H, W), their conditioning, predict): predict(t (B, T), cond)
    is the denoiser's x0 estimate of x0 noised to levels t with one fixed noise draw."""
    x0 = rearrange(batch["frames"], "b t c h w -> b c t h w")
    cond = clip_conditioning(batch)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def predict(t: torch.Tensor, c: Conditioning = cond) -> torch.Tensor:  # (B, C, T, H, W)
        return denoiser(add_noise(x0, noise, t), t, c)

    return x0, cond, predict


def after_clean_context(b: int, n: int, chunk: int, level: float) -> torch.Tensor:
    """Levels (B, T): the last chunk at `level`, every earlier frame clean."""
    t = torch.zeros(b, n)
    t[:, n - chunk:] = level
    return t


@torch.no_grad()
def denoising_errors(denoiser, batch: dict, seed: int = 0) -> dict[str, float]:
    """Mean squared x0 errors (frames in [-1, 1]) on a batch of clips (B, T, 3, H, W)."""
    x0, cond, predict = teacher_forcing(denoiser, batch, seed)
    b, n, chunk = x0.shape[0], x0.shape[2], denoiser.config.chunk

    def err(pred: torch.Tensor, frames: slice) -> float:
        return float((pred - x0)[:, :, frames].pow(2).mean())

    out = {"mean frame (no conditioning)": float((x0 - x0.mean(dim=(0, 2), keepdim=True)).pow(2).mean())}
    preds = {level: predict(torch.full((b, n), level)) for level in timesteps(4)[:-1].tolist()}
    for level, pred in preds.items():
        out[f"first chunk, t={level:g}"] = err(pred, slice(0, chunk))
    out["last chunk after clean context, t=1"] = err(predict(after_clean_context(b, n, chunk, 1.0)),
                                                      slice(n - chunk, n))
    held = x0[:, :, n - chunk - 1 : n - chunk]  # the last context frame, held for the whole chunk
    out["last chunk: copying the last context frame"] = float((x0[:, :, n - chunk :] - held).pow(2).mean())
    off = predict(torch.ones(b, n), cond.with_flags(use_audio=True, use_identity=False))
    out["identity on vs off at t=1 (output change)"] = float((preds[1.0] - off).pow(2).mean())
    return out


@torch.no_grad()
def teacher_forced_lipsync(denoiser, batch: dict, meters, seed: int = 0) -> dict[str, float]:
    """Lip sync r of the last chunk's x0 estimate after clean context, at every level of the
    4-step grid, audio on and off (mouth meter on estimate vs on the real frames)."""
    x0, cond, predict = teacher_forcing(denoiser, batch, seed)
    b, n, chunk = x0.shape[0], x0.shape[2], denoiser.config.chunk

    def mouth(video: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> meter mouth of the last chunk (B * K,)
        last = rearrange(video[:, :, n - chunk:], "b c k h w -> (b k) c h w")
        return meters.measure((last + 1) / 2).mouth

    real = mouth(x0)
    out = {}
    for level in timesteps(4)[:-1].tolist():
        t = after_clean_context(b, n, chunk, level)
        for name, c in (("audio on", cond), ("audio off", cond.with_flags(use_audio=False, use_identity=True))):
            out[f"lip sync r after clean context, t={level:g}, {name}"] = pearson(mouth(predict(t, c)), real)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m starcaster_core.eval.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="default", help="a STARCaster .safetensors, or 'default'")
    p.add_argument("--data", required=True, help="a shard directory with identities (e.g. held-out talking clips)")
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=16, help="frames per clip (a multiple of the model's chunk)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the table goes to the log
    from .__main__ import load_model

    model = load_model(args.checkpoint, "cpu")
    data = load_sequences(args.data, model.config)
    if "identity" not in data.extra:
        raise SystemExit(f"{args.data} has no ground-truth identities; the probe needs them")
    clips = ClipSampler(data, None, model.config, args.frames)
    batch = clips.sample(args.clips, 0.0, torch.Generator().manual_seed(args.seed))
    scores = denoising_errors(model.denoiser, batch, args.seed)
    if model.config.pixel_size == (64, 64) and model.config.space == "pixel":  # the meters read 64x64 frames
        scores |= teacher_forced_lipsync(model.denoiser, batch, load_meters(), args.seed)
    for name, value in scores.items():
        log.info("%-55s %.4f", name, value)


if __name__ == "__main__":
    main()
