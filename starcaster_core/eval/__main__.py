"""Score a checkpoint: ``python -m starcaster_core.eval``.

    python -m starcaster_core.eval --checkpoint default --audio speech.wav --identity seed:3 \\
        --trajectory orbit_left
    python -m starcaster_core.eval --checkpoint runs/demo/views.safetensors --heldout 8 --seconds 10

Generates with the model, renders the world's ground truth for the same inputs, and prints
every metric for the model, the ground truth and a chance baseline (see ``report.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from ..generate import GenerateSettings
from .evaluate import EvalSettings, evaluate_clip, summarise
from .inputs import Clip, EvalInputError, heldout_clips, read_audio, read_identity, read_trajectory
from .meters import DEFAULT_METERS, MetersError, load_meters
from .report import NOTES, format_clips, format_table, to_json, write_strip

log = logging.getLogger("starcaster_core.eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m starcaster_core.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="default",
                   help="a STARCaster .safetensors, or 'default' (the embedded model)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", nargs="+", help="audio file(s), any format and rate; one clip each")
    src.add_argument("--heldout", type=int, metavar="N", help="N held-out clips drawn from the world (seeds 10000 + i)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each held-out clip")
    p.add_argument("--identity", default="seed:0",
                   help="seed:N (world identity N) | portrait image | identity .safetensors")
    p.add_argument("--trajectory", default="static", help="camera preset name or trajectory .json")
    p.add_argument("--fps", type=float, default=None, help="video fps (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=GenerateSettings().steps)
    p.add_argument("--shift", type=float, default=1.0)
    p.add_argument("--chunk", type=int, default=None, help="frames per chunk (default: the model's)")
    p.add_argument("--context", type=int, default=None, help="context frames (default: the model's)")
    p.add_argument("--audio-guidance", type=float, default=1.0)
    p.add_argument("--identity-guidance", type=float, default=1.0)
    p.add_argument("--motion", type=float, default=1.0, help="motion intensity of the main generation")
    p.add_argument("--lip-sync", type=float, default=1.0)
    p.add_argument("--drift-window", type=float, default=10.0, help="seconds of the early / late drift windows")
    p.add_argument("--crop", default="center", choices=["face", "center", "full"], help="portrait crop")
    p.add_argument("--no-portrait", action="store_true",
                   help="condition on the identity embedding alone (as a mixed, sampled or embedding-only "
                        "identity does), not on the portrait beside it")
    p.add_argument("--meters", default=str(DEFAULT_METERS), help="meters .safetensors")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write all scores to this JSON file")
    p.add_argument("--strip", default=None, help="also write a PNG of each clip's frames: ground truth over the model")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


def load_model(name: str, device: str):
    from ..checkpoint import load_checkpoint
    from ..default import default_model

    model = default_model() if name == "default" else load_checkpoint(name)
    return model.to(device).eval()


def build_clips(args: argparse.Namespace) -> list[Clip]:
    if args.heldout is not None:
        if args.heldout < 1:
            raise EvalInputError("--heldout needs N >= 1")
        return heldout_clips(args.heldout, args.seconds)
    identity = read_identity(args.identity)
    trajectory, label = read_trajectory(args.trajectory, args.seed)
    clips = []
    for path in args.audio:
        wave, sr = read_audio(path)
        clips.append(Clip(Path(path).name, wave, sr, identity, trajectory, label))
    return clips


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        model = load_model(args.checkpoint, args.device)
        meters = load_meters(args.meters, args.device)
        clips = build_clips(args)
        cfg = model.config
        settings = EvalSettings(
            generate=GenerateSettings(seed=args.seed, steps=args.steps, shift=args.shift,
                                      audio_guidance=args.audio_guidance, identity_guidance=args.identity_guidance,
                                      chunk=args.chunk or cfg.chunk,
                                      context=cfg.context_frames if args.context is None else args.context),
            motion=args.motion, lip_sync=args.lip_sync, fps=args.fps, drift_window_s=args.drift_window,
            crop=args.crop, portrait=not args.no_portrait)
        results = [evaluate_clip(model, meters, clip, settings, args.device) for clip in clips]
    except (EvalInputError, MetersError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = summarise(results)
    gs = settings.generate
    print(f"checkpoint: {args.checkpoint} ('{cfg.name}', {cfg.height}x{cfg.width}, {cfg.fps:g} fps)")
    print(f"settings: seed {gs.seed}, steps {gs.steps}, chunk {gs.chunk}, context {gs.context}, "
          f"motion {settings.motion:g}, guidance audio {gs.audio_guidance:g} / identity {gs.identity_guidance:g}, "
          f"portrait {'on' if settings.portrait else 'off (the embedding alone)'}")
    print(f"meters: {args.meters}")
    print(format_clips(results))
    print()
    print(format_table(summary, f"summary over {len(results)} clip(s), {time.time() - t0:.0f} s:"))
    print()
    print("\n".join(NOTES))
    if args.strip:
        write_strip(results, args.strip)
        print(f"wrote {args.strip}")
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results, summary), indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
