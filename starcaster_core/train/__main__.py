"""python -m starcaster_core.train [--stage all|motion|sync|views] [--field value ...]

Every TrainConfig field is a flag (e.g. --motion-steps 1200 --batch 8 --out runs/demo).
--stage X trains up to the end of stage X, resuming from what --out holds: run motion, then
sync, then views (or all at once). Under torchrun every process trains (DDP).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

from .config import STAGES, TrainConfig
from .trainer import train


def parse(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m starcaster_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=("all", *STAGES), default="all")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "until":
            continue
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = vars(p.parse_args(argv))
    stage = args.pop("stage")
    return TrainConfig(**args, until=STAGES[-1] if stage == "all" else stage)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(parse())
