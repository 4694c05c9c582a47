"""Talking-head generation from speech, an identity and a camera path: what the sampler node calls."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .audio import AudioFeatures
from .camera import CameraPreset, head_relative, pose_features, preset_trajectory, validate_trajectory
from .conditioning import make_conditioning
from .flow import timesteps
from .identity import Identity, check_space
from .model import STARCaster
from .sampler import Callback, Guidance, sample_chunks

MAX_CHUNK, MAX_CONTEXT = 64, 256
MAX_GUIDANCE = 10.0
POSE_SEED = 7919  # the head-pose prior draws from seed + this, apart from the frames' noise


@dataclass(frozen=True)
class SpeechConditioning:
    """What the Lip-Sync Conditioning node hands the sampler."""

    features: AudioFeatures
    identity: Identity
    lip_sync: float = 1.0  # audio embedding strength (0 = ignore the audio)
    motion: float = 1.0  # motion intensity (0 = still head, 1 = as trained): scales the pose prior's turns too


@dataclass(frozen=True)
class GenerateSettings:
    seed: int = 0
    steps: int = 2  # the embedded model scores the same at 2 Euler steps as at 3, 4 or 8 (README, Performance)
    shift: float = 1.0
    audio_guidance: float = 1.0
    identity_guidance: float = 1.0
    chunk: int = 4
    context: int = 8


def check_settings(settings: GenerateSettings) -> None:
    """Actionable errors for settings out of range."""
    if not 1 <= settings.chunk <= MAX_CHUNK:
        raise ValueError(f"chunk size {settings.chunk} is out of range; use 1 to {MAX_CHUNK} frames (4 is typical)")
    if not 0 <= settings.context <= MAX_CONTEXT:
        raise ValueError(f"context window {settings.context} is out of range; use 0 to {MAX_CONTEXT} frames")
    if settings.steps < 1:
        raise ValueError(f"steps must be at least 1, got {settings.steps}; use 4 (1 to 8 is typical)")
    if not (math.isfinite(settings.shift) and 0 < settings.shift <= MAX_GUIDANCE):
        raise ValueError(f"timestep shift {settings.shift} is out of range; use a value in (0, {MAX_GUIDANCE}]")
    for name in ("audio_guidance", "identity_guidance"):
        value = getattr(settings, name)
        if not (math.isfinite(value) and 0 <= value <= MAX_GUIDANCE):
            raise ValueError(f"{name} {value} is out of range; use 0 to {MAX_GUIDANCE} (1.0 = off)")


def resolve_camera(camera: torch.Tensor | None, n_frames: int) -> torch.Tensor:
    """The camera the sampler follows: the given (T, 4) trajectory, or the static front view."""
    return preset_trajectory(CameraPreset.STATIC, n_frames) if camera is None else camera


def head_motion(model: STARCaster, speech: SpeechConditioning, camera: torch.Tensor, seed: int,
                device: torch.device) -> torch.Tensor:
    """The (T, 4) camera relative to a head that turns as the model's pose prior draws it for this
    speech (scaled by the motion intensity); the camera itself without a prior or at motion 0."""
    if model.pose_prior is None or speech.motion == 0:
        return camera
    generator = torch.Generator().manual_seed((int(seed) + POSE_SEED) % 2**63)
    pose = model.pose_prior.sample(speech.features.features, generator, device)  # (T, 3) degrees
    return head_relative(camera.float(), pose * speech.motion)


def generate(
    model: STARCaster,
    speech: SpeechConditioning,
    camera: torch.Tensor | None,  # (T, 4) yaw, pitch, roll, distance; None = static front view
    settings: GenerateSettings,
    *,
    device: torch.device,
    callback: Callback | None = None,
    interrupt: Callable[[], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yields (start frame, chunk) with chunks (K, C, H, W) in the model's space; for pixel
    models that is RGB in [-1, 1]. The video has exactly speech.features.n_frames frames."""
    check_settings(settings)
    n_frames = speech.features.n_frames
    camera = resolve_camera(camera, n_frames)
    try:
        validate_trajectory(camera)
    except ValueError as e:
        raise ValueError(f"{e}; connect a trajectory made by 'STARCaster Camera Trajectory'") from e
    if camera.shape != (n_frames, 4):
        raise ValueError(
            f"the camera trajectory has {camera.shape[0]} frames but the audio needs {n_frames}; "
            "connect the audio features to the Camera Trajectory node (or set its frames to match)"
        )
    camera = head_motion(model, speech, camera, settings.seed, device)
    identity = check_space(speech.identity, model)
    portrait = speech.identity.reference if model.config.reference_frame else None
    if portrait is not None and tuple(portrait.shape[-2:]) != model.config.pixel_size:
        raise ValueError(f"the identity's portrait is {tuple(portrait.shape[-2:])} but the model draws "
                         f"{model.config.pixel_size} frames; make the identity again with this model")
    cond = make_conditioning(
        identity=identity[None],
        audio=speech.features.features[None],  # (1, T, K, M)
        camera=pose_features(camera.float())[None],  # (1, T, 10)
        motion=speech.motion,
        audio_strength=speech.lip_sync,
        reference=None if portrait is None else portrait[None],  # (1, 3, H, W)
    )
    generator = torch.Generator().manual_seed(int(settings.seed))
    chunks = sample_chunks(
        model.denoiser, cond, timesteps(settings.steps, settings.shift), generator=generator,
        chunk=settings.chunk, context=settings.context,
        guidance=Guidance(audio=settings.audio_guidance, identity=settings.identity_guidance),
        callback=callback, interrupt=interrupt, device=device,
    )
    for start, x in chunks:
        yield start, x[0].transpose(0, 1)  # (C, K, H, W) -> (K, C, H, W)
