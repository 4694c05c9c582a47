"""Camera trajectories: presets, keyframes and per-frame camera embeddings (JSON: camera_json.py).

A trajectory is a float32 tensor ``(T, 4)``, one row per video frame:
``(yaw_deg, pitch_deg, roll_deg, distance)``.

Convention (the head frame: x = out of the face toward the default camera, y = the subject's
left, z = up; the camera always looks at the head):
- yaw   > 0: the camera orbits to the subject's left (about +z).
- pitch > 0: the camera rises above the eye line and looks down at the subject.
- roll  > 0: the camera rolls counter-clockwise about its viewing axis (seen from behind the
  camera), so the subject appears turned clockwise in the picture.
- distance: 1.0 = the default framing, > 1 farther away, < 1 closer; always > 0.
The rotation is ``R = Rz(yaw) @ Ry(-pitch) @ Rx(roll)`` (kornia's euler order with our pitch
sign); the camera sits at ``distance * R @ e_x`` in units of the default distance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from kornia.geometry.conversions import deg2rad, quaternion_to_rotation_matrix, rad2deg
from kornia.geometry.quaternion import Quaternion

from .camera_plot import plot_trajectory as plot_trajectory  # re-exported: (T, 4) -> (H, W, 3) chart

logger = logging.getLogger(__name__)

POSE_FEATURE_DIM = 10  # 9 rotation-matrix entries + log(distance)
FRONTAL = (0.0, 0.0, 0.0, 1.0)  # the default camera: facing the subject at the default framing
MAX_ABS_PITCH = 89.0  # keyframes stay clear of the pole, where yaw and roll are undefined

# Amplitude 1.0 of each preset (see preset_trajectory's table).
ARC_YAW_DEG, ARC_PITCH_DEG = 30.0, 8.0
NOD_PITCH_DEG = 10.0
HANDHELD_STD = (1.5, 1.0, 0.75, 0.015)  # yaw, pitch, roll (deg), log-distance
HANDHELD_COMPONENTS = 6  # sinusoids per channel, 1..6 cycles per clip at speed 1


class CameraPreset(str, Enum):
    STATIC = "static"
    ORBIT_LEFT = "orbit_left"
    ORBIT_RIGHT = "orbit_right"
    ARC = "arc"
    NOD = "nod"
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    DOLLY = "dolly"
    HANDHELD = "handheld"


# Sweeping presets: (yaw, pitch, roll, log-distance) moved by one full sweep at amplitude 1.
_SWEEPS = {
    CameraPreset.ORBIT_LEFT: (30.0, 0.0, 0.0, 0.0),
    CameraPreset.ORBIT_RIGHT: (-30.0, 0.0, 0.0, 0.0),
    CameraPreset.ARC: (2 * ARC_YAW_DEG, 0.0, 0.0, 0.0),  # from -30 deg; plus a pitch bump, see below
    CameraPreset.ZOOM_IN: (0.0, 0.0, 0.0, math.log(0.7)),
    CameraPreset.ZOOM_OUT: (0.0, 0.0, 0.0, -math.log(0.7)),
    CameraPreset.DOLLY: (15.0, 0.0, 0.0, math.log(0.8)),
}


@dataclass(frozen=True)
class Keyframe:
    frame: int
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    distance: float = 1.0


@dataclass(frozen=True)
class PresetSpec:
    """A preset with its settings; ``build_trajectory(spec, n_frames)`` renders it."""

    preset: CameraPreset = CameraPreset.STATIC
    amplitude: float = 1.0
    speed: float = 1.0
    ease: bool = True
    loop: bool = False
    seed: int = 0


TrajectorySpec = PresetSpec | Sequence[Keyframe]


# ---------------------------------------------------------------- validation


def as_preset(preset: CameraPreset | str) -> CameraPreset:
    try:
        return CameraPreset(preset)
    except ValueError:
        options = ", ".join(p.value for p in CameraPreset)
        raise ValueError(f"unknown camera preset {preset!r}; choose one of: {options}") from None


def _check_n_frames(n_frames: int) -> None:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be an integer >= 1, got {n_frames!r}")


def validate_keyframes(keyframes: Sequence[Keyframe]) -> None:
    """Raise ValueError, saying what to change, unless ``keyframes`` can be interpolated."""
    if len(keyframes) == 0:
        raise ValueError("no keyframes given; add at least one, e.g. Keyframe(frame=0)")
    for i, k in enumerate(keyframes):
        if not isinstance(k, Keyframe):
            raise ValueError(f"keyframe {i} is a {type(k).__name__}, not a Keyframe")
        if isinstance(k.frame, bool) or not isinstance(k.frame, int) or k.frame < 0:
            raise ValueError(f"keyframe {i}: frame must be an integer >= 0, got {k.frame!r}")
        for name in ("yaw", "pitch", "roll", "distance"):
            value = getattr(k, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"keyframe {i} (frame {k.frame}): {name} must be a finite number, got {value!r}")
        if k.distance <= 0:
            raise ValueError(f"keyframe {i} (frame {k.frame}): distance must be > 0 (1.0 = default framing, "
                             f"> 1 farther), got {k.distance}")
        if abs(k.pitch) > MAX_ABS_PITCH:
            raise ValueError(f"keyframe {i} (frame {k.frame}): pitch {k.pitch} is beyond +-{MAX_ABS_PITCH} deg; "
                             "at +-90 the camera is straight above/below the head and yaw/roll are undefined")
        if i > 0 and k.frame <= keyframes[i - 1].frame:
            prev = keyframes[i - 1].frame
            what = "repeats" if k.frame == prev else "comes after"
            raise ValueError(f"keyframes out of order: frame {k.frame} {what} frame {prev}; sort keyframes by "
                             "frame and give each frame at most one keyframe")


def validate_trajectory(traj: torch.Tensor) -> None:
    """Raise ValueError unless ``traj`` is a finite ``(T, 4)`` trajectory with T >= 1 and distance > 0."""
    if not isinstance(traj, torch.Tensor) or traj.ndim != 2 or traj.shape[-1] != 4 or traj.shape[0] < 1:
        shape = tuple(traj.shape) if isinstance(traj, torch.Tensor) else type(traj).__name__
        raise ValueError(f"a camera trajectory is a (T, 4) tensor of (yaw, pitch, roll, distance), got {shape}")
    if not torch.isfinite(traj).all():
        raise ValueError("camera trajectory contains NaN or inf values")
    if (traj[:, 3] <= 0).any():
        raise ValueError("camera trajectory has distance <= 0; distance is a scale (1.0 = default framing)")


# ---------------------------------------------------------------- rotations (kornia)


def euler_to_quaternion(angles: torch.Tensor) -> torch.Tensor:
    """(..., 3) degrees (yaw, pitch, roll) -> (..., 4) unit quaternion (w, x, y, z)."""
    yaw, pitch, roll = deg2rad(angles).unbind(-1)  # each (...)
    return Quaternion.from_euler(roll=roll, pitch=-pitch, yaw=yaw).data  # (..., 4)


def quaternion_to_euler(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (w, x, y, z) -> (..., 3) degrees (yaw, pitch, roll), yaw/roll in [-180, 180]."""
    roll, pitch, yaw = Quaternion(q).to_euler()  # each (...), radians
    return rad2deg(torch.stack((yaw, -pitch, roll), dim=-1))  # (..., 3)


def _unwrap(angles: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Remove 360-degree jumps along T; the first row becomes the value of ``anchor`` mod 360.

    angles: (T, 3) degrees; anchor: (3,).
    """
    step = torch.remainder(angles.diff(dim=0) + 180.0, 360.0) - 180.0  # (T-1, 3), each in [-180, 180)
    start = angles[0] + 360.0 * torch.round((anchor - angles[0]) / 360.0)  # (3,)
    return start + torch.cat([torch.zeros_like(start)[None], step.cumsum(dim=0)])  # (T, 3)


# ---------------------------------------------------------------- presets


def _sweep(s: torch.Tensor, ease: bool) -> torch.Tensor:
    """0 -> 1 -> 0 ping-pong, period 2: s = number of one-way sweeps done. Cosine turns when eased."""
    if ease:
        return 0.5 * (1.0 - torch.cos(math.pi * s))
    return 1.0 - torch.abs(torch.remainder(s, 2.0) - 1.0)


def _handheld(u: torch.Tensor, speed: float, loop: bool, seed: int) -> torch.Tensor:
    """Smooth seeded noise: a sum of sinusoids with random phases, 1/k weights. u: (T,) -> (T, 4)."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.arange(1, HANDHELD_COMPONENTS + 1, dtype=torch.float64)  # (K,)
    if loop:  # whole cycles per clip, so the end meets the start
        freq = k * max(1, round(speed))
    else:
        freq = speed * (k + 0.6 * (torch.rand(4, HANDHELD_COMPONENTS, generator=gen, dtype=torch.float64) - 0.5))
    coef = torch.randn(2, 4, HANDHELD_COMPONENTS, generator=gen, dtype=torch.float64) / k  # (2, 4, K)
    phase = 2.0 * math.pi * u[:, None, None] * freq  # (T, 4 or 1, K)
    noise = (coef[0] * torch.cos(phase) + coef[1] * torch.sin(phase)).sum(-1)  # (T, 4)
    noise = noise / torch.sqrt((1.0 / k**2).sum())  # unit variance per channel
    noise = noise - noise[:1]  # start at the neutral pose
    return noise * torch.tensor(HANDHELD_STD, dtype=torch.float64)  # (T, 4): deg, deg, deg, log-distance


def preset_trajectory(preset: CameraPreset | str, n_frames: int, *, amplitude: float = 1.0, speed: float = 1.0,
                      ease: bool = True, loop: bool = False, seed: int = 0) -> torch.Tensor:
    """A named camera move over ``n_frames`` frames -> ``(T, 4)`` float32.

    What amplitude 1.0 means (angles scale linearly; distances as powers, so they stay > 0):

    ============  ===========================================================================
    static        the default framing, constant
    orbit_left    yaw 0 -> +30 deg (the camera swings around to the subject's left)
    orbit_right   yaw 0 -> -30 deg
    arc           yaw -30 -> +30 deg while pitch rises to +8 deg mid-way (a crane arc)
    nod           pitch oscillates +-10 deg (sin), speed = nods per clip
    zoom_in       distance 1.0 -> 0.7 (0.7 ** amplitude)
    zoom_out      distance 1.0 -> 1 / 0.7 = 1.43
    dolly         push in, distance 1.0 -> 0.8, while drifting yaw 0 -> +15 deg
    handheld      smooth seeded sway, std about 1.5 / 1.0 / 0.75 deg and 1.5 % distance
    ============  ===========================================================================

    speed: cycles per clip. Sweeping presets (orbit, arc, zoom, dolly) do ``speed`` one-way
        sweeps, ping-ponging back and forth (speed 2 = out and back). nod does ``speed``
        nods; handheld's sinusoids run at 1..6 x ``speed`` cycles per clip.
    ease: sweeps start and stop at rest (cosine instead of linear sweeps); nod and handheld
        get a smoothstep time warp, so the camera is at rest on the first and last frame.
    loop: the last frame equals the first: sweeps are rounded to an even count (>= 2, i.e.
        out and back), nod and handheld to whole cycles (>= 1).
    seed: handheld's noise (a private ``torch.Generator``); the other presets ignore it.
    """
    preset = as_preset(preset)
    _check_n_frames(n_frames)
    if not (math.isfinite(amplitude) and math.isfinite(speed) and speed > 0):
        raise ValueError(f"amplitude must be finite and speed finite and > 0, got amplitude={amplitude}, "
                         f"speed={speed}")
    if loop:
        whole = max(2, 2 * round(speed / 2)) if preset in _SWEEPS else max(1, round(speed))
        if whole != speed:
            logger.info("camera preset %s: loop=True rounds speed %s to %s so the end meets the start",
                        preset.value, speed, whole)
        speed = float(whole)

    u = torch.linspace(0.0, 1.0, n_frames, dtype=torch.float64)  # (T,) clip progress
    out = torch.zeros(n_frames, 4, dtype=torch.float64)  # (T, 4): yaw, pitch, roll, log-distance
    a = amplitude
    if preset in _SWEEPS:
        p = _sweep(speed * u, ease)  # (T,) in [0, 1]
        out = a * p[:, None] * torch.tensor(_SWEEPS[preset], dtype=torch.float64)  # (T, 4)
        if preset is CameraPreset.ARC:
            out[:, 0] -= a * ARC_YAW_DEG
            out[:, 1] = a * ARC_PITCH_DEG * torch.sin(math.pi * p)
    elif preset is not CameraPreset.STATIC:
        w = u * u * (3.0 - 2.0 * u) if ease else u  # (T,) smoothstep-warped time
        if preset is CameraPreset.NOD:
            out[:, 1] = NOD_PITCH_DEG * a * torch.sin(2.0 * math.pi * speed * w)
        else:  # HANDHELD
            out = a * _handheld(w, speed, loop, seed)
    out[:, 3] = torch.exp(out[:, 3])  # log-distance -> distance
    return (out + 0.0).float()  # + 0.0 turns -0.0 into 0.0


# ---------------------------------------------------------------- keyframes


def _segments(frames: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment index (T,) in [0, K-2] and local time tau (T,) in [0, 1] for frames 0..T-1; K >= 2."""
    t = torch.arange(n_frames, dtype=torch.float64)  # (T,)
    seg = (torch.searchsorted(frames, t, right=True) - 1).clamp(0, len(frames) - 2)  # (T,)
    tau = ((t - frames[seg]) / (frames[seg + 1] - frames[seg])).clamp(0.0, 1.0)  # (T,) held outside
    return seg, tau


def _pchip(x: torch.Tensor, y: torch.Tensor, seg: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Monotone cubic (Fritsch-Carlson) through (x, y), K >= 2: no overshoot, so distances stay > 0."""
    h = x.diff()  # (K-1,)
    delta = y.diff() / h  # (K-1,) secant slopes
    m = torch.empty_like(y)  # (K,) tangents
    m[0], m[-1] = delta[0], delta[-1]
    if len(y) > 2:
        w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]  # (K-2,)
        d0, d1 = delta[:-1], delta[1:]  # (K-2,) secants left and right of each interior knot
        same_sign = d0 * d1 > 0  # else a local extremum: flat tangent
        one = torch.ones_like(d0)
        harmonic = (w1 + w2) / (w1 / torch.where(same_sign, d0, one) + w2 / torch.where(same_sign, d1, one))
        m[1:-1] = torch.where(same_sign, harmonic, torch.zeros_like(harmonic))
    s, hs = tau, h[seg]  # (T,)
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y[seg] + h10 * hs * m[seg] + h01 * y[seg + 1] + h11 * hs * m[seg + 1]  # (T,)


def keyframe_quaternions(keyframes: Sequence[Keyframe], n_frames: int) -> torch.Tensor:
    """Per-frame camera rotation, slerped between keyframes (kornia) -> (T, 4) float64 (w, x, y, z)."""
    validate_keyframes(keyframes)
    _check_n_frames(n_frames)
    angles = torch.tensor([[k.yaw, k.pitch, k.roll] for k in keyframes], dtype=torch.float64)  # (K, 3)
    quats = euler_to_quaternion(angles)  # (K, 4)
    if len(keyframes) == 1:
        return quats.expand(n_frames, 4).clone()
    frames = torch.tensor([k.frame for k in keyframes], dtype=torch.float64)  # (K,)
    seg, tau = _segments(frames, n_frames)
    return Quaternion(quats[seg]).slerp(Quaternion(quats[seg + 1]), tau).data  # (T, 4), short arc


def keyframe_trajectory(keyframes: Sequence[Keyframe], n_frames: int) -> torch.Tensor:
    """Interpolate keyframes over frames 0..n_frames-1 -> ``(T, 4)`` float32.

    Rotations are slerped (each segment turns the short way, < 180 deg: add keyframes in between
    for longer turns); distance follows a monotone cubic spline (no overshoot). The curve passes
    through every keyframe and holds before the first and after the last one. Angles come out
    unwrapped (continuous, no 360-degree jumps), anchored to the first keyframe's values: they
    equal each keyframe's angles exactly when neighbouring keyframes differ by < 180 deg, and
    modulo 360 otherwise (yaw 170 -> -170 goes through 180 and ends at 190 = -170).
    """
    rot = quaternion_to_euler(keyframe_quaternions(keyframes, n_frames))  # (T, 3)
    k0 = keyframes[0]
    rot = _unwrap(rot, torch.tensor([k0.yaw, k0.pitch, k0.roll], dtype=torch.float64))  # (T, 3)
    dist = torch.tensor([k.distance for k in keyframes], dtype=torch.float64)  # (K,)
    if len(keyframes) == 1:
        dist_t = dist.expand(n_frames)
    else:
        frames = torch.tensor([k.frame for k in keyframes], dtype=torch.float64)  # (K,)
        dist_t = _pchip(frames, dist, *_segments(frames, n_frames))  # (T,)
    if rot[:, 1].abs().max() > MAX_ABS_PITCH:
        logger.warning("camera keyframes: the interpolated pitch passes near +-90 deg (the camera goes over the "
                       "top of the head); yaw and roll may flip there, add keyframes to steer the path")
    return torch.cat([rot, dist_t[:, None]], dim=1).float()  # (T, 4)


def build_trajectory(spec: TrajectorySpec, n_frames: int) -> torch.Tensor:
    """Render a PresetSpec or a keyframe list to a ``(T, 4)`` trajectory."""
    if isinstance(spec, PresetSpec):
        return preset_trajectory(spec.preset, n_frames, amplitude=spec.amplitude, speed=spec.speed,
                                 ease=spec.ease, loop=spec.loop, seed=spec.seed)
    return keyframe_trajectory(spec, n_frames)


# ---------------------------------------------------------------- operations


def combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Layer two trajectories: angles add (euler, per axis), distances multiply. (T, 4) x (T, 4) -> (T, 4).

    A one-frame trajectory broadcasts over the other. E.g. ``combine(orbit, nod)`` nods while orbiting.
    """
    validate_trajectory(a)
    validate_trajectory(b)
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"cannot combine trajectories of {len(a)} and {len(b)} frames; "
                         f"resample one first, e.g. resample(b, {len(a)})")
    angles = a[:, :3] + b[:, :3]  # (T, 3)
    distance = a[:, 3:] * b[:, 3:]  # (T, 1)
    return torch.cat([angles, distance], dim=1)


def resample(traj: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Stretch or compress ``(T, 4)`` to ``(n_frames, 4)`` in time (linear); first and last frames kept."""
    validate_trajectory(traj)
    _check_n_frames(n_frames)
    x = traj.to(torch.float64).T[None]  # (1, 4, T)
    x[:, 3] = torch.log(x[:, 3])  # interpolate distance as a log-scale
    if traj.shape[0] == 1:
        y = x.expand(1, 4, n_frames)
    else:
        y = torch.nn.functional.interpolate(x, size=n_frames, mode="linear", align_corners=True)  # (1, 4, N)
    y = y[0].T.clone()  # (N, 4)
    y[:, 3] = torch.exp(y[:, 3])
    return y.to(traj.dtype)


def head_relative(traj: torch.Tensor, head_pose: torch.Tensor) -> torch.Tensor:
    """The camera as the head sees it when the head turns: (T, 4) trajectory and (T, 3) head pose
    (yaw, pitch, roll degrees, same convention) -> (T, 4) with R = R_head^T @ R_camera, distance kept.

    A picture shows only the camera's orientation relative to the head, so a model that follows
    its camera input draws a turned head from this (how `generate` adds the pose prior's motion).
    """
    q_cam, q_head = Quaternion(euler_to_quaternion(traj[:, :3])), Quaternion(euler_to_quaternion(head_pose))
    angles = quaternion_to_euler((q_head.conj() * q_cam).data)  # (T, 3)
    return torch.cat([_unwrap(angles, traj[0, :3]), traj[:, 3:]], dim=1).to(traj.dtype)  # (T, 4)


def pose_features(traj: torch.Tensor) -> torch.Tensor:
    """Per-frame camera embedding: (..., 4) -> (..., 10) = rotation matrix R (row-major, 9) + log(distance).

    R = Rz(yaw) Ry(-pitch) Rx(roll) from kornia; yaw = pitch = roll = 0 gives the identity.
    """
    if traj.shape[-1] != 4:
        raise ValueError(f"pose_features expects (..., 4) = (yaw, pitch, roll, distance), got {tuple(traj.shape)}")
    if (traj[..., 3] <= 0).any():
        raise ValueError("pose_features: distance must be > 0 (1.0 = default framing)")
    rot = quaternion_to_rotation_matrix(euler_to_quaternion(traj[..., :3]))  # (..., 3, 3)
    return torch.cat([rot.flatten(-2), torch.log(traj[..., 3:])], dim=-1)  # (..., 10)


_JSON_NAMES = frozenset({"JSON_VERSION", "trajectory_from_json", "trajectory_to_json"})


def __getattr__(name: str):
    """JSON (de)serialisation lives in camera_json.py (which imports this module); re-exported
    lazily so ``from starcaster_core.camera import trajectory_from_json`` keeps working."""
    if name in _JSON_NAMES:
        from . import camera_json

        return getattr(camera_json, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
