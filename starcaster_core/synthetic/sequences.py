"""Whole sequences of the synthetic world: talking heads (audio -> video) and camera orbits.

Both return the same dict layout (torch tensors unless noted):

    frames       (T, 3, H, W) float 0..1
    audio        (S,) float32 mono waveform at ``sample_rate`` (silence for orbits)
    sample_rate  int (16000)
    fps          float
    mouth        (T,)   jaw opening 0..1 (the lip-sync ground truth, see ``lipsync.py``)
    mouth_width  (T,)   -1..1
    blink        (T,)   0..1
    pose         (T, 3) head (yaw, pitch, roll) degrees
    mouth_box    (T, 4) (cx, cy, w, h) in [0, 1]: where the mouth can be in each frame (``render.mouth_boxes``)
    camera       (T, 4) (yaw_deg, pitch_deg, roll_deg, distance); distance 1.0 = default framing
    identity     (IDENTITY_DIM,) ground-truth identity vector
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .identity import IdentityParams
from .lipsync import LipSyncRule, frame_count, mouth_from_audio
from .motion import MotionStyle, blink_track, head_motion
from .render import NEUTRAL_CAMERA, identity_rows, render_frames
from .speech import SAMPLE_RATE, to_mono_16k

RENDER_CHUNK = 64  # frames rendered per batch (bounds memory for long sequences)

AudioLike = tuple[np.ndarray, int] | np.ndarray | torch.Tensor


def _camera_track(camera: torch.Tensor | tuple[float, ...] | None, n: int) -> torch.Tensor:
    cam = torch.tensor(NEUTRAL_CAMERA) if camera is None else torch.as_tensor(camera).float()
    if cam.dim() == 1:
        cam = cam.view(1, 4).expand(n, 4)
    assert cam.shape == (n, 4), f"camera must be (4,) or ({n}, 4), got {tuple(cam.shape)}"
    return cam.contiguous()


def render_sequence(identity: IdentityParams | torch.Tensor, expression: torch.Tensor,
                    pose: torch.Tensor, camera: torch.Tensor, size: int | tuple[int, int]):
    """Render (T, 3, H, W) in chunks of ``RENDER_CHUNK`` frames; also each frame's mouth box (T, 4)."""
    ident = identity_rows(identity)  # (1, D)
    chunks = [
        render_frames(ident, expression[i:i + RENDER_CHUNK], pose[i:i + RENDER_CHUNK],
                      camera[i:i + RENDER_CHUNK], size=size,
                      batch=min(RENDER_CHUNK, expression.shape[0] - i), with_mouth_box=True)
        for i in range(0, expression.shape[0], RENDER_CHUNK)
    ]
    return torch.cat([c[0] for c in chunks], 0), torch.cat([c[1] for c in chunks], 0)


def talking_sequence(
    identity: IdentityParams,
    audio: AudioLike,
    fps: float = 25.0,
    camera: torch.Tensor | tuple[float, ...] | None = None,
    generator: torch.Generator | None = None,
    *,
    size: int | tuple[int, int] = 64,
    motion: MotionStyle = MotionStyle(),
    rule: LipSyncRule = LipSyncRule(),
) -> dict:
    """The avatar speaking ``audio`` ((wave, sr), or a 16 kHz array): T = ceil(duration * fps).

    Mouth follows the lip-sync rule; blinks and head motion are drawn from ``generator``;
    ``camera`` is (4,) for a fixed view, (T, 4) for a moving one, None for the frontal default.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if isinstance(audio, tuple):
        wave, sr = audio
    else:
        wave, sr = audio, SAMPLE_RATE
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = to_mono_16k(wave, int(sr))
    n = frame_count(len(wave), SAMPLE_RATE, fps)
    assert n > 0, "audio is empty"

    # 1. the audio decides the mouth; chance decides blinks and head motion
    lips = mouth_from_audio(wave, SAMPLE_RATE, fps, rule)
    mouth = torch.from_numpy(lips["mouth"])
    width = torch.from_numpy(lips["width"])
    blink = blink_track(n, fps, generator, motion)
    pose = head_motion(mouth, fps, generator, motion)
    cam = _camera_track(camera, n)

    # 2. render
    expression = torch.stack([mouth, width, blink], -1)  # (T, 3)
    frames, boxes = render_sequence(identity, expression, pose, cam, size)
    return {
        "frames": frames, "audio": torch.from_numpy(wave), "sample_rate": SAMPLE_RATE,
        "fps": float(fps), "mouth": mouth, "mouth_width": width, "blink": blink, "pose": pose,
        "mouth_box": boxes,
        "camera": cam, "identity": identity_rows(identity)[0].clone(),
    }


def orbit_camera(n_frames: int, generator: torch.Generator, yaw_range: float = 45.0,
                 pitch_range: float = 15.0) -> torch.Tensor:
    """(T, 4) camera sweeping yaw across about [-yaw_range, yaw_range] (random direction and
    extent 70-100 %), with a slow pitch wave of up to ``pitch_range`` degrees, fixed distance."""
    u = torch.rand(6, generator=generator)
    start = -yaw_range * (0.7 + 0.3 * float(u[0]))
    end = yaw_range * (0.7 + 0.3 * float(u[1]))
    if u[2] < 0.5:
        start, end = end, start
    s = torch.linspace(0.0, 1.0, n_frames)  # (T,)
    yaw = start + (end - start) * s
    pitch = pitch_range * (0.3 + 0.7 * float(u[3])) * torch.sin(
        2 * math.pi * (0.5 + 0.5 * float(u[4])) * s + 2 * math.pi * float(u[5]))
    distance = torch.full((n_frames,), 0.95 + 0.15 * float(torch.rand((), generator=generator)))
    return torch.stack([yaw, pitch, torch.zeros(n_frames), distance], -1)  # (T, 4)


def orbit_sequence(
    identity: IdentityParams,
    n_frames: int,
    generator: torch.Generator | None = None,
    *,
    size: int | tuple[int, int] = 64,
    fps: float = 25.0,
    yaw_range: float = 45.0,
    pitch_range: float = 15.0,
) -> dict:
    """A still head with a neutral expression seen from an orbiting camera (for view training)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    assert n_frames > 0, "n_frames must be positive"
    cam = orbit_camera(n_frames, generator, yaw_range, pitch_range)
    zeros = torch.zeros(n_frames)
    expression = torch.zeros(n_frames, 3)
    pose = torch.zeros(n_frames, 3)
    frames, boxes = render_sequence(identity, expression, pose, cam, size)
    n_samples = int(round(n_frames / fps * SAMPLE_RATE))
    return {
        "frames": frames, "audio": torch.zeros(n_samples), "sample_rate": SAMPLE_RATE,
        "fps": float(fps), "mouth": zeros, "mouth_width": zeros.clone(), "blink": zeros.clone(),
        "pose": pose, "mouth_box": boxes, "camera": cam, "identity": identity_rows(identity)[0].clone(),
    }
