"""The embedded default model that ships inside the pack."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import PRESETS
from .model import TORCH_OPS, STARCaster

log = logging.getLogger(__name__)

DEFAULT_NAME = "starcaster-demo (embedded)"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "demo.safetensors"
UNTRAINED_SEED = 20251213


def default_model(operations=TORCH_OPS, dtype: torch.dtype | None = None) -> STARCaster:
    """The shipped demo checkpoint; until one is trained and shipped, the untrained `demo`
    preset with a fixed seed (it generates flat frames, and says so in the log)."""
    if DEFAULT_WEIGHTS.is_file():
        return load_checkpoint(DEFAULT_WEIGHTS, operations, dtype)
    log.warning("no trained default weights at %s: using the UNTRAINED demo model", DEFAULT_WEIGHTS)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(UNTRAINED_SEED)
        reference = STARCaster(PRESETS["demo"])  # torch layers: comfy.ops ones skip their init
    model = STARCaster(PRESETS["demo"], operations)
    model.load_state_dict(reference.state_dict())
    return (model.to(dtype) if dtype is not None else model).eval()
