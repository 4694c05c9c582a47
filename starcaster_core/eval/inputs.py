"""What one evaluation clip is made of, read from command-line strings or drawn from the world.

* audio: any file librosa reads (wav, flac, mp3, ogg..., any rate, mono or multichannel)
* identity: ``seed:N`` (world identity N: ground truth exists), a portrait image, or a saved
  ``.safetensors`` identity (both without a world ground truth)
* trajectory: a camera preset name (``camera.CameraPreset``) or a trajectory ``.json`` file
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..camera import CameraPreset, PresetSpec, TrajectorySpec, build_trajectory, trajectory_from_json
from ..identity import Identity, load_identity
from ..synthetic.identity import IdentityParams, sample_identity
from ..synthetic.speech import speech_audio

HELDOUT_SEED = 10_000  # held-out clips use seeds 10_000 + i (training data uses seed 0's sub-seeds)
VALIDATION_SEED = 40_000  # the trainer's validation clips: held out from training and from the test clips
HELDOUT_TRAJECTORIES = ("static", "orbit_left", "arc", "nod", "orbit_right", "zoom_in", "dolly", "handheld")
IdentityKind = Literal["world", "portrait", "file"]


class EvalInputError(ValueError):
    """An evaluation input that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class IdentityInput:
    """The identity to condition on and, when it is a world identity, its ground truth."""

    kind: IdentityKind
    label: str
    world: IdentityParams | None = None  # kind "world"
    portrait: torch.Tensor | None = None  # kind "portrait": (H, W, 3) in 0..1
    saved: Identity | None = None  # kind "file"


@dataclass(frozen=True)
class Clip:
    """One evaluation clip: mono audio, an identity and a camera trajectory spec."""

    name: str
    wave: np.ndarray  # (S,) float32 mono
    sample_rate: int
    identity: IdentityInput
    trajectory: TrajectorySpec
    trajectory_label: str

    @property
    def duration(self) -> float:
        return len(self.wave) / self.sample_rate

    def camera(self, n_frames: int) -> torch.Tensor:
        """(n_frames, 4) camera path."""
        return build_trajectory(self.trajectory, n_frames)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any audio file -> (mono float32 (S,), native sample rate)."""
    import librosa

    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"audio file not found: {path}")
    try:
        wave, sr = librosa.load(str(path), sr=None, mono=True)
    except Exception as e:  # librosa / soundfile / audioread raise many types
        why = str(e) or type(e).__name__
        raise EvalInputError(f"cannot read {path.name} as audio ({why}); convert it to wav or flac") from e
    if wave.size == 0:
        raise EvalInputError(f"{path.name} contains no samples")
    return wave.astype(np.float32), int(sr)


def read_identity(text: str) -> IdentityInput:
    """``seed:N`` | an image file | a saved identity ``.safetensors``."""
    if text.startswith("seed:"):
        try:
            seed = int(text[5:])
        except ValueError:
            raise EvalInputError(f"--identity {text!r}: expected seed:N with an integer N, e.g. seed:3") from None
        return IdentityInput("world", f"world identity {seed}", world=sample_identity(seed))
    path = Path(text)
    if not path.is_file():
        raise EvalInputError(f"--identity {text!r} is neither seed:N nor an existing file")
    if path.suffix.lower() == ".safetensors":
        return IdentityInput("file", path.name, saved=load_identity(path))
    from PIL import Image, UnidentifiedImageError

    try:
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise EvalInputError(f"--identity {path.name}: not a readable image ({e})") from e
    return IdentityInput("portrait", path.name, portrait=torch.from_numpy(image))


def read_trajectory(text: str, seed: int = 0) -> tuple[TrajectorySpec, str]:
    """A preset name or a trajectory JSON file -> (spec, label)."""
    names = [p.value for p in CameraPreset]
    if text in names:
        return PresetSpec(CameraPreset(text), seed=seed), text
    path = Path(text)
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            return trajectory_from_json(path.read_text()), path.name
        except ValueError as e:
            raise EvalInputError(f"--trajectory {path.name}: {e}") from e
    raise EvalInputError(f"--trajectory {text!r}: use a preset ({', '.join(names)}) or a .json trajectory file")


def heldout_clips(n: int, seconds: float, first_seed: int = HELDOUT_SEED) -> list[Clip]:
    """``n`` clips from the world that no training run saw: identity, speech and camera path
    from seeds first_seed + i, trajectories cycling through HELDOUT_TRAJECTORIES."""
    clips = []
    for i in range(n):
        seed = first_seed + i
        wave, sr = speech_audio(seconds, seed)
        name = HELDOUT_TRAJECTORIES[i % len(HELDOUT_TRAJECTORIES)]
        ident = IdentityInput("world", f"world identity {seed}", world=sample_identity(seed))
        spec = PresetSpec(CameraPreset(name), seed=seed)
        clips.append(Clip(f"heldout-{i}", wave, sr, ident, spec, name))
    return clips
