"""Head-relative view angles: what a picture of the head shows, as a camera (yaw, pitch, roll).

A frame shows the head from the camera, but the head also turns. What the pixels determine is
the camera's orientation *relative to the head*: R_view = R_head^T @ R_camera, with both
rotations built by the world's euler convention (``synthetic.scene.euler_matrix``:
R = Ry(yaw) Rx(-pitch) Rz(roll) in the world's axes; the same angles as ``camera.py``'s
trajectories, whose axes are only relabelled). So for a still head the view angles are the
camera's angles, and for a frontal camera they are minus the head pose (to first order).

The PoseMeter predicts view angles; given the requested camera, ``head_pose_from_view``
recovers the head pose the frames show (R_head = R_camera @ R_view^T).
"""

from __future__ import annotations

import torch

from ..synthetic.scene import euler_matrix


def matrix_to_euler(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 3) degrees (yaw, pitch, roll), inverse of ``euler_matrix``.

    With R = Ry(a) Rx(-b) Rz(c): R[1, 2] = sin b, (R[0, 2], R[2, 2]) = cos b (sin a, cos a),
    (R[1, 0], R[1, 1]) = cos b (sin c, cos c). Exact for |pitch| < 90 degrees.
    """
    pitch = torch.asin(rot[..., 1, 2].clamp(-1.0, 1.0))
    yaw = torch.atan2(rot[..., 0, 2], rot[..., 2, 2])
    roll = torch.atan2(rot[..., 1, 0], rot[..., 1, 1])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=-1))  # (..., 3)


def view_angles(camera: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
    """Camera (..., 4 or 3) and head pose (..., 3) degrees -> head-relative view (..., 3) degrees."""
    r_cam = euler_matrix(camera[..., :3].float())  # (..., 3, 3)
    if pose is None:
        return matrix_to_euler(r_cam)
    r_head = euler_matrix(pose.float())
    return matrix_to_euler(r_head.transpose(-1, -2) @ r_cam)


def head_pose_from_view(view: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Measured view (..., 3) and the camera (..., 4 or 3) that filmed it -> head pose (..., 3) degrees."""
    r_view = euler_matrix(view.float())  # (..., 3, 3)
    r_cam = euler_matrix(camera[..., :3].float())
    return matrix_to_euler(r_cam @ r_view.transpose(-1, -2))
