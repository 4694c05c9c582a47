"""python -m starcaster_core.bench: speed and memory of the embedded model, measured in one run.

Prints a table of figures and ratios: end-to-end frames/s (audio features + head-pose prior +
sampler + uint8 frames out, for the identity of a world portrait: a portrait model turns it to
every frame's camera; the median of 3 fresh processes), time and peak RSS at 1x/2x/4x the
audio length (each the median of 3 fresh processes), KV cache vs recomputing the context (and their max difference), the
sliding-window bidirectional baseline, peak RSS while writing an MP4 file (H.264 + AAC, as
STARCaster Render Video does) of 1x and 4x the length, and the denoiser's achieved FLOP/s
against this machine's matmul FLOP/s; with --compile also torch.compile'd blocks against eager.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode

from ..audio import audio_features
from ..camera import pose_features
from ..conditioning import make_conditioning
from ..default import default_model
from ..flow import timesteps
from ..generate import GenerateSettings, SpeechConditioning, generate, resolve_camera
from ..identity import encode_portrait
from ..sampler import sample_video
from ..synthetic.formant import synthesize_speech
from ..synthetic.identity import sample_identity
from ..synthetic.render import render_portrait
from .baseline import sliding_window_video

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SETTINGS = GenerateSettings()  # the sampler node's defaults
REPEATS = 3  # fresh processes timing each length; the median is reported (single runs vary by ~10% here)


def speech(seconds: float) -> tuple[np.ndarray, int]:
    return synthesize_speech(seconds, seed=1)  # (waveform, 16000)


def portrait_identity(model):
    """The identity of a world portrait (as users make one from a picture): with a portrait
    model, the portrait is turned to every frame's camera, so the warp is in the figures."""
    return encode_portrait(model, render_portrait(sample_identity(0)), "center")


def end_to_end(model, seconds: float, video: str | None = None) -> tuple[float, int]:
    """Seconds for audio -> features -> frames (uint8, streamed out), and the frame count. With
    `video` (a path) the frames and the speech go into an MP4 file, as Render Video writes it."""
    wav, sr = speech(seconds)
    identity = portrait_identity(model)  # made once per person, not per video: not timed
    t0 = time.perf_counter()
    feats = audio_features(wav, sr, 25.0, model.config)
    cond = SpeechConditioning(feats, identity)
    n = 0
    with contextlib.ExitStack() as stack:
        out = None
        if video is not None:
            from ..video_writer import StreamingVideoWriter  # needs PyAV (ComfyUI has it)

            h, w = model.config.pixel_size
            audio = {"waveform": torch.from_numpy(wav)[None, None], "sample_rate": sr}  # (1, 1, S)
            out = stack.enter_context(StreamingVideoWriter(video, 25.0, w, h, audio))
        with torch.inference_mode():
            for _, chunk in generate(model, cond, None, SETTINGS, device=torch.device("cpu")):
                frames = (chunk.float().clamp(-1, 1) + 1) / 2  # (K, C, H, W) in 0..1
                if out is not None:
                    out.write(rearrange(frames, "k c h w -> k h w c"))
                else:  # a sink: the frames leave here as uint8
                    (frames * 255).round().to(torch.uint8).numpy()
                n += frames.shape[0]
    return time.perf_counter() - t0, n


def child(dtype: str, seconds: float, compiled: bool, video: bool = False) -> None:
    """One measurement in this (fresh) process: prints time, frames and peak RSS as JSON."""
    model = default_model(dtype=DTYPES[dtype])
    if compiled:
        model.denoiser.compile_blocks()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.mp4") if video else None
        warm, _ = end_to_end(model, 1.0, path)  # warm-up (librosa JIT, kernels, compilation)
        elapsed, frames = end_to_end(model, seconds, path)
        size = os.path.getsize(path) if video else 0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "frames": frames, "peak_mb": peak_mb, "warmup": warm, "bytes": size}))


def run_child(dtype: str, seconds: float, compiled: bool = False, video: bool = False) -> dict:
    cmd = [sys.executable, "-m", "starcaster_core.bench", "--child", dtype, str(seconds)]
    cmd += (["--compile"] if compiled else []) + (["--video"] if video else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def video_rows(name: str, L: float) -> list[tuple[str, str]]:
    """Peak RSS while writing an MP4 (H.264 + AAC) of 1x and 4x the length, fresh processes."""
    try:
        import av  # noqa: F401
    except ImportError:
        return [(f"[{name}] MP4 file", "skipped: PyAV is not installed")]
    runs = {k: run_child(name, k * L, video=True) for k in (1, 4)}
    return [
        (f"[{name}] MP4 file: peak RSS 1L / 4L (MB)", " / ".join(f"{runs[k]['peak_mb']:.0f}" for k in (1, 4))),
        (f"[{name}] MP4 file: mem(4L)/mem(L), file 4L (kB)",
         f"{runs[4]['peak_mb'] / runs[1]['peak_mb']:.3f}, {runs[4]['bytes'] / 1024:.0f}"),
    ]


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
    ident = portrait_identity(model)
    camera = pose_features(resolve_camera(None, feats.shape[0]))  # (T, 10) static front view
    portrait = None if ident.reference is None else ident.reference[None]
    return make_conditioning(ident.embedding[None], feats[None], camera[None], reference=portrait)


def timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@torch.inference_mode()
def measure(name: str, dtype: torch.dtype, L: float, compiled: bool) -> list[tuple[str, str]]:
    """Every figure for one weight dtype (and torch.compile against eager if `compiled`)."""
    timings = {k: sorted((run_child(name, k * L) for _ in range(REPEATS)), key=lambda r: r["seconds"])
               for k in (1, 2, 4)}  # fresh processes at 1x, 2x and 4x the length
    runs = {k: repeats[REPEATS // 2] for k, repeats in timings.items()}  # each length's median run
    repeats = timings[1]
    fps = runs[1]["frames"] / runs[1]["seconds"]
    every = ", ".join(f"{r['frames'] / r['seconds']:.1f}" for r in repeats)
    rows = [
        (f"[{name}] end-to-end frames/s (L = {L:g} s)",
         f"{fps:.1f}  ({fps / 25:.2f}x real time at 25 fps; median of {every})"),
        (f"[{name}] time 1L / 2L / 4L (s)", " / ".join(f"{runs[k]['seconds']:.2f}" for k in (1, 2, 4))),
        (f"[{name}] t(2L)/t(L), t(4L)/t(L)",
         f"{runs[2]['seconds'] / runs[1]['seconds']:.3f}, {runs[4]['seconds'] / runs[1]['seconds']:.3f}"),
        (f"[{name}] peak RSS 1L / 2L / 4L (MB)", " / ".join(f"{runs[k]['peak_mb']:.0f}" for k in (1, 2, 4))),
        (f"[{name}] mem(4L)/mem(L)", f"{runs[4]['peak_mb'] / runs[1]['peak_mb']:.3f}"),
        *video_rows(name, L),
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
    # the same window moved by the AR sampler's chunk: a new chunk out per window, as soon as the AR sampler has one
    _, t_slide_chunk = timed(lambda: sliding_window_video(den, cond, sched, window=16, overlap=16 - SETTINGS.chunk,
                                                          generator=seeded()))
    with FlopCounterMode(display=False) as counter:
        sample_video(den, cond.frame_slice(0, 24), sched, generator=seeded(), **kw)
    flops = counter.get_total_flops() * cond.frames / 24 / t_cache
    peak = matmul_flops(dtype)
    return rows + [
        (f"[{name}] KV cache vs recompute: speed-up", f"{t_re / t_cache:.2f}x"),
        (f"[{name}] KV cache vs recompute: max |diff|", f"{(cached - recomputed).abs().max().item():.2e}"),
        (f"[{name}] vs sliding window (16, overlap 4): throughput", f"{t_slide / t_cache:.2f}x"),
        (f"[{name}] vs sliding window (16, overlap {16 - SETTINGS.chunk}: {SETTINGS.chunk} new frames per window, "
         "the AR chunk's latency): throughput", f"{t_slide_chunk / t_cache:.2f}x"),
        (f"[{name}] matmul 2048^2 GFLOP/s", f"{peak / 1e9:.0f}"),
        (f"[{name}] denoiser GFLOP/s (sampler)", f"{flops / 1e9:.0f}  ({flops / peak:.0%} of matmul)"),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="audio length L")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd blocks (needs a C++ compiler)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--video", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], float(args.child[1]), args.compile, args.video)
    rows: list[tuple[str, str]] = [("torch threads", str(torch.get_num_threads()))]
    for name, dtype in DTYPES.items():
        rows += measure(name, dtype, args.seconds, args.compile)
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


if __name__ == "__main__":
    main()
