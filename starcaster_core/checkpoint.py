"""safetensors checkpoints whose metadata carries the config JSON and a format version.

Only safetensors are ever read (no pickle). Loading rebuilds the model from the metadata and
refuses foreign or mismatched files with a message that says what to do.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .model import TORCH_OPS, STARCaster

log = logging.getLogger(__name__)

FORMAT = "starcaster"
FORMAT_VERSION = 1
MAX_CONFIG_NUMBER = 65536  # no size in a sane config comes near this


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
        raise CheckpointError(f"checkpoint not found: {path}; put the .safetensors file there or pick another")
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
    version = meta.get("format_version", "0")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path.name} has checkpoint format {version}; this STARCaster reads format "
            f"{FORMAT_VERSION}. Update the node pack or re-export the checkpoint."
        )
    return meta


def _config_of(path: Path, meta: dict[str, str]) -> ModelConfig:
    """The ModelConfig in the metadata, with every field of the right type and sane sizes."""
    try:
        data = json.loads(meta["config"])
        if not isinstance(data, dict):
            raise TypeError(f"config is a {type(data).__name__}, not an object")
        for f in dataclasses.fields(ModelConfig):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(ModelConfig(), f.name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  if isinstance(default, float) else type(value) is type(default))
            if not ok:
                raise TypeError(f"{f.name} must be {type(default).__name__}, got {value!r}")
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not (math.isfinite(value) and 0 <= value <= MAX_CONFIG_NUMBER):
                    raise ValueError(f"{f.name} = {value!r} is out of range")
        config = ModelConfig.from_json(meta["config"])
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise CheckpointError(
            f"{path.name}: its config metadata is invalid ({e}). The file is damaged or was edited; "
            "re-export it with starcaster_core.checkpoint.save_checkpoint."
        ) from e
    return config


def _expected_shapes(config: ModelConfig, path: Path) -> dict[str, tuple[int, ...]]:
    """Parameter shapes the config implies, from a model built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            model = STARCaster(config)
    except Exception as e:  # a config the model cannot be built from (bad sizes)
        raise CheckpointError(f"{path.name}: no STARCaster can be built from its config ({e}); re-export it.") from e
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_checkpoint(
    path: str | Path, operations=TORCH_OPS, dtype: torch.dtype | None = None
) -> STARCaster:
    """Rebuild the model from the file's config metadata and load its weights (on the CPU).

    The tensor shapes in the file are checked against the config before any weight is read or
    the model is allocated, so a mismatched or hostile config cannot blow up memory."""
    path = Path(path)
    meta = read_metadata(path)
    config = _config_of(path, meta)
    expected = _expected_shapes(config, path)
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        missing = sorted(set(expected) - set(shapes))
        unexpected = sorted(set(shapes) - set(expected))
        wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
        if missing or unexpected or wrong:
            raise CheckpointError(
                f"{path.name}: weights do not match its config '{config.name}' "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}). "
                "The file is damaged or was edited; re-export it."
            )
        state = {k: f.get_tensor(k) for k in f.keys()}
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise CheckpointError(
            f"{path.name}: weights {bad[:3]} hold NaN or infinite values (a diverged training run?); "
            "use an earlier checkpoint."
        )
    model = STARCaster(config, operations)
    model.load_state_dict(state)
    if dtype is not None:
        model.to(dtype)
    log.info("loaded STARCaster '%s' from %s", config.name, path)
    return model.eval()
