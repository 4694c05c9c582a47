"""Meters: small CNNs that read the synthetic world's ground truth back out of a frame.

They are trained on fresh ground-truth renders of the world (``meter_training.py``), never on
any model's output, so they grade a generator independently of it:

* MouthMeter     frame -> (jaw opening 0..1, mouth width -1..1, blink 0..1)
* PoseMeter      frame -> head-relative view (yaw, pitch, roll) degrees and camera distance
                 (see ``geometry.py``: for a still head the view is the camera's angles)
* IdentityMeter  frame -> the world's identity vector (IDENTITY_DIM entries in 0..1); its
                 penultimate features are the feature space of the Frechet fidelity distance

Frames are (N, 3, H, W) RGB in 0..1 at any size (resized to the meters' side). The trained
meters ship as ``meters.safetensors`` next to this file (safetensors + config metadata, no
pickle). Train them again with ``python -m starcaster_core.eval.meters --out PATH``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..synthetic.identity import IDENTITY_DIM

log = logging.getLogger(__name__)

METERS_FORMAT = "starcaster-meters"
METERS_VERSION = 1
DEFAULT_METERS = Path(__file__).parent / "meters.safetensors"
VIEW_SCALE_DEG = 30.0  # the pose meter predicts angles / 30 and log(distance) / 0.3
LOG_DISTANCE_SCALE = 0.3


@dataclass(frozen=True)
class MeterConfig:
    """Geometry of every meter (all three share it)."""

    size: int = 64  # frames are resized to size x size
    widths: tuple[int, ...] = (16, 32, 64, 64)  # one stride-2 conv per entry
    features: int = 64  # penultimate width (the Frechet feature space of the identity meter)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MeterConfig:
        data = json.loads(text)
        data["widths"] = tuple(data["widths"])
        return cls(**data)


class Meter(nn.Module):
    """A small CNN: (N, 3, S, S) in 0..1 -> features (N, F) and outputs (N, K)."""

    def __init__(self, config: MeterConfig, outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(config.widths):  # each halves the side
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            if i == 0:  # a refinement at half resolution keeps small details (the mouth is ~6 px wide)
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        side = config.size // 2 ** len(config.widths)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, config.features), nn.SiLU())
        self.head = nn.Linear(config.features, outputs)
        self.size = config.size

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.float()
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        feats = self.fc(self.trunk(x * 2.0 - 1.0))  # (N, F)
        return feats, self.head(feats)  # (N, F), (N, K)


@dataclass(frozen=True)
class Measurement:
    """What the meters read from T frames."""

    mouth: torch.Tensor  # (T,) jaw opening 0..1
    width: torch.Tensor  # (T,) mouth width -1..1
    blink: torch.Tensor  # (T,) 0..1
    view: torch.Tensor  # (T, 3) head-relative view (yaw, pitch, roll) degrees
    distance: torch.Tensor  # (T,) camera distance, 1.0 = default framing
    identity: torch.Tensor  # (T, IDENTITY_DIM) world identity vector
    features: torch.Tensor  # (T, F) identity-meter features (for Frechet distances)


class Meters(nn.Module):
    """The three meters, loaded and saved together."""

    def __init__(self, config: MeterConfig = MeterConfig()) -> None:
        super().__init__()
        self.config = config
        self.mouth = Meter(config, 3)  # jaw, width, blink
        self.pose = Meter(config, 4)  # view yaw, pitch, roll (/ 30 deg), log distance (/ 0.3)
        self.identity = Meter(config, IDENTITY_DIM)

    @torch.no_grad()
    def measure(self, frames: torch.Tensor, batch: int = 256) -> Measurement:
        """Read (T, 3, H, W) frames in 0..1 (any T, batched)."""
        assert frames.ndim == 4 and frames.shape[1] == 3, f"expected (T, 3, H, W) frames, got {tuple(frames.shape)}"
        dev = next(self.parameters()).device
        parts: dict[str, list[torch.Tensor]] = {"mouth": [], "pose": [], "id": [], "feat": []}
        for i in range(0, frames.shape[0], batch):
            x = frames[i:i + batch].to(dev).float().clamp(0.0, 1.0)
            parts["mouth"].append(self.mouth(x)[1].cpu())
            parts["pose"].append(self.pose(x)[1].cpu())
            feats, ident = self.identity(x)
            parts["id"].append(ident.cpu())
            parts["feat"].append(feats.cpu())
        mouth, pose = torch.cat(parts["mouth"]), torch.cat(parts["pose"])  # (T, 3), (T, 4)
        return Measurement(
            mouth=mouth[:, 0], width=mouth[:, 1], blink=mouth[:, 2],
            view=pose[:, :3] * VIEW_SCALE_DEG, distance=torch.exp(pose[:, 3] * LOG_DISTANCE_SCALE),
            identity=torch.cat(parts["id"]), features=torch.cat(parts["feat"]),
        )


class MetersError(ValueError):
    """A meters file that cannot be used, with what to do about it."""


def save_meters(meters: Meters, path: str | Path, info: dict | None = None) -> None:
    """safetensors with the config JSON, a format version and free-form training info."""
    meta = {"format": METERS_FORMAT, "format_version": str(METERS_VERSION), "config": meters.config.to_json(),
            "info": json.dumps(info or {})}
    tensors = {k: v.detach().contiguous().cpu() for k, v in meters.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)


def meters_info(path: str | Path = DEFAULT_METERS) -> dict:
    """The training info stored with a meters file (steps, seed, held-out accuracy...)."""
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))


def load_meters(path: str | Path = DEFAULT_METERS, device: torch.device | str = "cpu") -> Meters:
    """Rebuild the meters from a file's metadata and load their weights."""
    path = Path(path)
    if not path.is_file():
        raise MetersError(f"no meters at {path}; train them with "
                          f"`python -m starcaster_core.eval.meters --out {path}` (a few minutes on a CPU)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise MetersError(f"{path.name} is not a readable safetensors file ({e}); train the meters again") from e
    if meta.get("format") != METERS_FORMAT or meta.get("format_version") != str(METERS_VERSION):
        raise MetersError(f"{path.name} is not a version-{METERS_VERSION} STARCaster meters file; "
                          "train them again with `python -m starcaster_core.eval.meters`")
    meters = Meters(MeterConfig.from_json(meta["config"]))
    meters.load_state_dict(state)
    return meters.to(device).eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> None:
    from .meter_training import MeterTraining, train_meters

    defaults = MeterTraining()
    p = argparse.ArgumentParser(prog="python -m starcaster_core.eval.meters",
                                description="Train the evaluation meters on fresh ground-truth renders of the world.")
    p.add_argument("--out", default=str(DEFAULT_METERS), help="output .safetensors path")
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--pool", type=int, default=defaults.pool, help="training frames rendered up front")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = train_meters(args.out, steps=args.steps, seed=args.seed, pool=args.pool)
    sys.stdout.write(json.dumps(info, indent=2) + "\n")  # the CLI's result


if __name__ == "__main__":
    main()
