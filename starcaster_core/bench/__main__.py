"""python -m starcaster_core.bench: speed and memory of the embedded model, measured in one run.

Prints a table of figures and ratios: end-to-end frames/s (audio features + sampler + uint8
frames out), time and peak RSS at 1x/2x/4x the audio length (each in a fresh process), KV
cache vs recomputing the context (and their max difference), the sliding-window bidirectional
baseline, and the denoiser's achieved FLOP/s against this machine's matmul FLOP/s; with
--compile also torch.compile'd blocks against eager.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..audio import audio_features
from ..camera import pose_features
from ..conditioning import make_conditioning
from ..default import default_model
from ..flow import timesteps
from ..generate import GenerateSettings, SpeechConditioning, generate, resolve_camera
from ..identity import random_identity
from ..sampler import sample_video
from ..synthetic.formant import synthesize_speech
from .baseline import sliding_window_video

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SETTINGS = GenerateSettings()  # the sampler node's defaults


def speech(seconds: float) -> tuple[np.ndarray, int]:
    return synthesize_speech(seconds, seed=1)  # (waveform, 16000)


def end_to_end(model, seconds: float) -> tuple[float, int]:
    """Seconds for audio -> features -> frames (uint8, streamed out), and the frame count."""
    wav, sr = speech(seconds)
    t0 = time.perf_counter()
    feats = audio_features(wav, sr, 25.0, model.config)
    cond = SpeechConditioning(feats, random_identity(model, 0))
    n = 0
    with torch.inference_mode():
        for _, chunk in generate(model, cond, None, SETTINGS, device=torch.device("cpu")):
            frames = ((chunk.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            n += frames.shape[0]  # a sink: the frames leave here (a video writer in real use)
    return time.perf_counter() - t0, n


def child(dtype: str, seconds: float, compiled: bool) -> None:
    """One measurement in this (fresh) process: prints time, frames and peak RSS as JSON."""
    model = default_model(dtype=DTYPES[dtype])
    if compiled:
        model.denoiser.compile_blocks()
    warm, _ = end_to_end(model, 1.0)  # warm-up (librosa JIT, kernels, compilation)
    elapsed, frames = end_to_end(model, seconds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "frames": frames, "peak_mb": peak_mb, "warmup": warm}))


def run_child(dtype: str, seconds: float, compiled: bool = False) -> dict:
    cmd = [sys.executable, "-m", "starcaster_core.bench", "--child", dtype, str(seconds)]
    out = subprocess.run(cmd + (["--compile"] if compiled else []), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compiled_rows(name: str, L: float, eager: dict) -> list[tuple[str, str]]:
    """End-to-end speed with torch.compile'd blocks (a fresh process) against the eager run."""
    comp = run_child(name, L, compiled=True)
    fps_e, fps_c = eager["frames"] / eager["seconds"], comp["frames"] / comp["seconds"]
    return [
        (f"[{name}] torch.compile: end-to-end frames/s", f"{fps_c:.1f} vs eager {fps_e:.1f}  ({fps_c / fps_e:.2f}x)"),
        (f"[{name}] torch.compile: first 1 s of video (compiles)",
         f"{comp['warmup']:.1f} s vs eager {eager['warmup']:.2f} s"),
    ]


def matmul_flops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def cond_for(model, seconds: float):
    wav, sr = speech(seconds)
    feats = audio_features(wav, sr, 25.0, model.config).features
    ident = random_identity(model, 0).embedding
    camera = pose_features(resolve_camera(None, feats.shape[0]))  # (T, 10) static front view
    return make_conditioning(ident[None], feats[None], camera[None])


def timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@torch.inference_mode()
def measure(name: str, dtype: torch.dtype, L: float, compiled: bool) -> list[tuple[str, str]]:
    """Every figure for one weight dtype (and torch.compile against eager if `compiled`)."""
    runs = {k: run_child(name, k * L) for k in (1, 2, 4)}
    fps = runs[1]["frames"] / runs[1]["seconds"]
    rows = [
        (f"[{name}] end-to-end frames/s (L = {L:g} s)", f"{fps:.1f}  ({fps / 25:.2f}x real time at 25 fps)"),
        (f"[{name}] time 1L / 2L / 4L (s)", " / ".join(f"{runs[k]['seconds']:.2f}" for k in (1, 2, 4))),
        (f"[{name}] t(2L)/t(L), t(4L)/t(L)",
         f"{runs[2]['seconds'] / runs[1]['seconds']:.3f}, {runs[4]['seconds'] / runs[1]['seconds']:.3f}"),
        (f"[{name}] peak RSS 1L / 2L / 4L (MB)", " / ".join(f"{runs[k]['peak_mb']:.0f}" for k in (1, 2, 4))),
        (f"[{name}] mem(4L)/mem(L)", f"{runs[4]['peak_mb'] / runs[1]['peak_mb']:.3f}"),
        *(compiled_rows(name, L, runs[1]) if compiled else []),
    ]
    model = default_model(dtype=dtype)
    den, cond = model.denoiser, cond_for(model, L)
    sched = timesteps(SETTINGS.steps, SETTINGS.shift)
    kw = dict(chunk=SETTINGS.chunk, context=SETTINGS.context)

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    cached, t_cache = timed(lambda: sample_video(den, cond, sched, generator=seeded(), **kw))
    recomputed, t_re = timed(lambda: sample_video(den, cond, sched, generator=seeded(), use_cache=False, **kw))
    _, t_slide = timed(lambda: sliding_window_video(den, cond, sched, window=16, overlap=4, generator=seeded()))
    with FlopCounterMode(display=False) as counter:
        sample_video(den, cond.frame_slice(0, 24), sched, generator=seeded(), **kw)
    flops = counter.get_total_flops() * cond.frames / 24 / t_cache
    peak = matmul_flops(dtype)
    return rows + [
        (f"[{name}] KV cache vs recompute: speed-up", f"{t_re / t_cache:.2f}x"),
        (f"[{name}] KV cache vs recompute: max |diff|", f"{(cached - recomputed).abs().max().item():.2e}"),
        (f"[{name}] vs sliding window (16, overlap 4): throughput", f"{t_slide / t_cache:.2f}x"),
        (f"[{name}] matmul 2048^2 GFLOP/s", f"{peak / 1e9:.0f}"),
        (f"[{name}] denoiser GFLOP/s (sampler)", f"{flops / 1e9:.0f}  ({flops / peak:.0%} of matmul)"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="audio length L")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd blocks (needs a C++ compiler)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], float(args.child[1]), args.compile)
    rows: list[tuple[str, str]] = [("torch threads", str(torch.get_num_threads()))]
    for name, dtype in DTYPES.items():
        rows += measure(name, dtype, args.seconds, args.compile)
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


if __name__ == "__main__":
    main()
