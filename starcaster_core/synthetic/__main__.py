"""CLI: write a synthetic dataset of shards.

    python -m starcaster_core.synthetic --out data/talk --n 100 --kind talking --frames 50
    python -m starcaster_core.synthetic --out data/orbit --n 100 --kind orbit --frames 32
"""

from __future__ import annotations

import argparse
import logging

from .shards import KINDS, write_shards


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m starcaster_core.synthetic",
                                     description="Write synthetic talking-avatar shards.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--n", type=int, default=100, help="number of sequences")
    parser.add_argument("--kind", choices=KINDS, default="talking")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=50, help="frames per sequence")
    parser.add_argument("--size", type=int, default=64, help="square frame size in pixels")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--shard-size", type=int, default=64, help="sequences per shard")
    parser.add_argument("--identities", type=int, default=None,
                        help="share this many identities across the sequences (default: all new)")
    parser.add_argument("--audio", choices=("auto", "espeak", "formant"), default="auto",
                        help="speech source for talking sequences")
    parser.add_argument("--workers", type=int, default=1, help="processes (one per core)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_shards(args.out, args.n, args.kind, args.seed, args.frames, args.size, args.fps,
                 args.shard_size, n_identities=args.identities, audio=args.audio, workers=args.workers)


if __name__ == "__main__":
    main()
