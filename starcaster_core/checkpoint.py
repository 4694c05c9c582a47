"""safetensors checkpoints whose metadata carries the config JSON and a format version.

Only safetensors are ever read (no pickle). Loading rebuilds the model from the metadata and
refuses foreign or mismatched files with a message that says what to do.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .model import TORCH_OPS, STARCaster

log = logging.getLogger(__name__)

FORMAT = "starcaster"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a loadable STARCaster checkpoint."""


def save_checkpoint(model: STARCaster, path: str | Path, extra: dict[str, str] | None = None) -> None:
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": model.config.to_json()}
    meta.update(extra or {})
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a STARCaster safetensors file, validated."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path.name} is not a readable safetensors file ({e}); it may be truncated or another "
            "format. Re-download or re-train it; only .safetensors files are loaded."
        ) from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path.name} is a safetensors file but not a STARCaster checkpoint (no "
            f"'format: {FORMAT}' in its metadata). Put only STARCaster models in models/starcaster/."
        )
    version = int(meta.get("format_version", "0"))
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path.name} has checkpoint format {version}; this STARCaster reads format "
            f"{FORMAT_VERSION}. Update the node pack or re-export the checkpoint."
        )
    return meta


def load_checkpoint(
    path: str | Path, operations=TORCH_OPS, dtype: torch.dtype | None = None
) -> STARCaster:
    """Rebuild the model from the file's config metadata and load its weights (on the CPU)."""
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_json(meta["config"])
    except (KeyError, TypeError, ValueError, AssertionError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{Path(path).name}: its config metadata is invalid ({e}).") from e
    model = STARCaster(config, operations)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{Path(path).name}: weights do not match its config '{config.name}' "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}). "
            "The file is damaged or was edited; re-export it."
        )
    model.load_state_dict(state)
    if dtype is not None:
        model.to(dtype)
    log.info("loaded STARCaster '%s' from %s", config.name, path)
    return model.eval()
