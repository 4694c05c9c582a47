"""Assemble the avatar's 3D primitives (world -> head pose -> camera) for a batch of frames.

World space: +x is the viewer's right in the frontal view (the avatar's left), +y up, +z out of
the face towards the default camera. The head centre is the origin; the head turns about a neck
pivot below it, the neck and shoulders stay put.

Head pose ``(yaw, pitch, roll)`` in degrees: R = Ry(yaw) Rx(-pitch) Rz(roll); positive yaw turns
the face towards +x (image right), positive pitch tilts it up, positive roll tilts it
counter-clockwise in the image.

Camera ``(yaw, pitch, roll, distance)``: the camera orbits the look-at point ``TARGET``;
positive yaw moves it towards +x (so the face turns to the image left and its left side shows),
positive pitch moves it up (looking down on the head), roll turns it about its optical axis
(the image turns clockwise), distance 1.0 is the default framing (``BASE_DISTANCE`` units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from .identity import HAIR_STYLES, IDENTITY_DIM, RANGES
from .raster import Ellipsoids

BASE_DISTANCE = 6.0
TAN_HALF_FOV = 0.29  # half the shorter image side, on the image plane at depth 1
TARGET = (0.0, -0.35, 0.0)
NECK_PIVOT = (0.0, -0.9, -0.15)
LIGHT = (-0.35, 0.45, 0.82)  # towards the light, camera space (upper left, front)

# Primitive slots, in order. Slot 0 (the head) is painted with the face.
HEAD, NOSE, EAR_L, EAR_R, HAIR0, HAIR1, NECK, TORSO = range(8)
N_PRIMITIVES = 8

# Hair slots per style: centre and radii in multiples of the head radii, pitch in degrees,
# enabled flag. Rows follow HAIR_STYLES.
_CAP = ((0, 0.16, -0.19), (1.06, 1.00, 1.08), 0, 1)
_HAIR_TABLE = {
    "short": [_CAP, None],
    "long": [_CAP, ((0, -0.55, -0.32), (1.10, 1.10, 0.70), 0, 1)],
    "bun": [_CAP, ((0, 0.85, -0.60), (0.40, 0.36, 0.40), 0, 1)],
    "balding": [((0, -0.12, -0.30), (1.04, 0.86, 0.95), 0, 1), None],
    "afro": [((0, 0.24, -0.22), (1.34, 1.14, 1.10), 0, 1), None],
    "ponytail": [_CAP, ((0, 0.05, -1.12), (0.26, 0.58, 0.28), -35, 1)],
}
N_HAIR = 2


def _hair_tables() -> tuple[torch.Tensor, ...]:
    """Stack ``_HAIR_TABLE`` into (S, N_HAIR, 3) centre / radii, (S, N_HAIR) pitch, enabled."""
    off = ((0, 0, 0), (0.1, 0.1, 0.1), 0, 0)
    rows = [[slot or off for slot in _HAIR_TABLE[name]] for name in HAIR_STYLES]
    centre = torch.tensor([[r[0] for r in row] for row in rows], dtype=torch.float32)
    radii = torch.tensor([[r[1] for r in row] for row in rows], dtype=torch.float32)
    pitch = torch.tensor([[r[2] for r in row] for row in rows], dtype=torch.float32)
    enabled = torch.tensor([[r[3] for r in row] for row in rows], dtype=torch.float32)
    return centre, radii, pitch, enabled


def euler_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """(..., 3) (yaw, pitch, roll) degrees -> (..., 3, 3) = Ry(yaw) Rx(-pitch) Rz(roll)."""
    rad = torch.deg2rad(angles_deg.float())
    zero = torch.zeros_like(rad[..., 0])

    def axis(i: int, angle: torch.Tensor) -> torch.Tensor:
        vec = [zero, zero, zero]
        vec[i] = angle
        return axis_angle_to_rotation_matrix(torch.stack(vec, dim=-1))  # (..., 3, 3)

    return axis(1, rad[..., 0]) @ axis(0, -rad[..., 1]) @ axis(2, rad[..., 2])


def decode_identity(vec: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, IDENTITY_DIM) identity vectors -> natural-unit tensors (each (B,) or (B, 3))."""
    assert vec.shape[-1] == IDENTITY_DIM, f"identity vectors must have {IDENTITY_DIM} dims"
    v = vec.float().clamp(0.0, 1.0)

    def scal(i: int, name: str) -> torch.Tensor:
        lo, hi = RANGES[name]
        return lo + v[:, i] * (hi - lo)

    skin = v[:, 3:6]
    lips = torch.stack([(0.80 * skin[:, 0] + 0.10).clamp(max=1.0), 0.46 * skin[:, 1],
                        0.50 * skin[:, 2] + 0.04], dim=-1)
    return {
        "radii": torch.stack([scal(0, "head_width"), scal(1, "head_height"),
                              scal(2, "head_depth")], dim=-1),  # (B, 3)
        "skin": skin, "hair": v[:, 6:9], "style": v[:, 9:15].argmax(-1), "iris": v[:, 15:18],
        "eye_size": scal(18, "eye_size"), "eye_spacing": scal(19, "eye_spacing"),
        "brow_thickness": scal(20, "brow_thickness"), "brow_tilt": scal(21, "brow_tilt"),
        "nose_length": scal(22, "nose_length"), "nose_width": scal(23, "nose_width"),
        "mouth_width": scal(24, "mouth_width"), "shirt": v[:, 25:28],
        "background": v[:, 28:31], "background_gradient": v[:, 31], "lips": lips,
        "brows": 0.7 * v[:, 6:9],
    }


@dataclass(frozen=True)
class Scene:
    """The camera-space primitives of a batch plus what painting and compositing need."""

    ellipsoids: Ellipsoids
    colours: torch.Tensor  # (B, P, 3) base colours (the head's is replaced by its paint)
    head_depth: torch.Tensor  # (B,) camera distance of the head centre
    light: torch.Tensor  # (3,) unit vector towards the light, camera space


def build_scene(ident: dict[str, torch.Tensor], pose: torch.Tensor, camera: torch.Tensor) -> Scene:
    """Place all primitives for B frames.

    ident: ``decode_identity`` output (B rows); pose (B, 3) degrees; camera (B, 4).
    """
    B = pose.shape[0]
    hr = ident["radii"]  # (B, 3) head radii
    eye3 = torch.eye(3).expand(B, 3, 3)

    # 1. head-local primitives (head centre = origin): head, nose, ears, hair slots
    nl, nw = ident["nose_length"], ident["nose_width"]
    zeros = torch.zeros(B)
    nose_c = torch.stack([zeros, -0.16 * hr[:, 1], 0.93 * hr[:, 2]], -1)
    nose_r = torch.stack([0.12 * nw, 0.20 + 0 * nw, 0.17 * nl], -1)
    ear_c = torch.stack([0.97 * hr[:, 0], -0.06 * hr[:, 1], -0.05 + zeros], -1)
    ear_r = torch.tensor([0.09, 0.21, 0.14]).expand(B, 3)
    h_centre, h_radii, h_pitch, h_on = (t[ident["style"]] for t in _hair_tables())  # (B, N_HAIR, ...)
    hair_c = h_centre * hr.unsqueeze(1)  # (B, N_HAIR, 3)
    hair_r = h_radii * hr.unsqueeze(1)
    hair_rot = euler_matrix(torch.stack([0 * h_pitch, h_pitch, 0 * h_pitch], -1))  # (B,N_HAIR,3,3)
    nose_rot = euler_matrix(torch.tensor([0.0, -12.0, 0.0]).expand(B, 3))
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    local_c = torch.stack([zeros.unsqueeze(-1).expand(B, 3), nose_c, ear_c * mirror, ear_c], 1)
    local_c = torch.cat([local_c, hair_c], 1)  # (B, 4 + N_HAIR, 3)
    local_r = torch.cat([torch.stack([hr, nose_r, ear_r, ear_r], 1), hair_r], 1)  # (B, 4+N_HAIR, 3)
    local_rot = torch.cat([torch.stack([eye3, nose_rot, eye3, eye3], 1), hair_rot], 1)

    # 2. head pose: rotate the head group about the neck pivot
    R_head = euler_matrix(pose)  # (B, 3, 3)
    pivot = torch.tensor(NECK_PIVOT)
    world_c = pivot + torch.einsum("bij,bpj->bpi", R_head, local_c - pivot)  # (B, 4+N_HAIR, 3)
    world_rot = R_head.unsqueeze(1) @ local_rot  # (B, 4 + N_HAIR, 3, 3)

    # 3. static body: neck and shoulders
    body_c = torch.tensor([[0.0, -1.30, -0.14], [0.0, -2.42, -0.32]]).expand(B, 2, 3)
    body_r = torch.stack([torch.stack([0.36 + zeros, 0.62 + zeros, 0.36 + zeros], -1),
                          torch.stack([1.55 + zeros, 0.95 + zeros, 0.80 + zeros], -1)], 1)
    world_c = torch.cat([world_c, body_c], 1)  # (B, P, 3)
    world_rot = torch.cat([world_rot, eye3.unsqueeze(1).expand(B, 2, 3, 3)], 1)  # (B, P, 3, 3)
    radii = torch.cat([local_r, body_r], 1)  # (B, P, 3)

    # 4. camera: orbit about TARGET; world -> camera = R_c2w^T (p - position)
    cam = camera.float()
    R_c2w = euler_matrix(cam[:, :3])  # (B, 3, 3)
    offset = torch.stack([zeros, zeros, BASE_DISTANCE * cam[:, 3]], -1)  # (B, 3)
    position = torch.tensor(TARGET) + torch.einsum("bij,bj->bi", R_c2w, offset)
    R_w2c = R_c2w.transpose(-1, -2)
    cam_c = torch.einsum("bij,bpj->bpi", R_w2c, world_c - position.unsqueeze(1))  # (B, P, 3)
    cam_rot = R_w2c.unsqueeze(1) @ world_rot  # (B, P, 3, 3)

    ones = torch.ones(B, 1)
    enabled = torch.cat([ones.expand(B, 4), h_on, ones.expand(B, 2)], 1)  # (B, P)
    hair, skin = ident["hair"], ident["skin"]
    colours = torch.stack([skin, skin, skin * 0.95, skin * 0.95, hair, hair,
                           skin * 0.88, ident["shirt"]], 1)  # (B, P, 3)
    light = torch.tensor(LIGHT) / math.sqrt(sum(x * x for x in LIGHT))
    return Scene(
        ellipsoids=Ellipsoids(centre=cam_c, rotation=cam_rot, radii=radii, enabled=enabled),
        colours=colours, head_depth=-cam_c[:, HEAD, 2], light=light,
    )
