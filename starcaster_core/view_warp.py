"""A portrait seen from another camera: depth-based reprojection onto a sphere standing in for the head.

Why: a `reference_frame` model reads its portrait as pixels, and copying those pixels is the
shortest path to a good frame, so the demo model learned to copy the portrait's view and left its
camera input unused (camera follow 0.005; README, Status, session 11). With `reference_warp` the
portrait is first turned to each frame's camera, so what the model copies is already the view
to draw, roughly: the camera reaches the pixels through geometry, not only through the adaLN.

The geometry is the pack's camera convention (`camera.py`): the camera orbits the look-at point
at `distance` (1.0 = the default framing) and looks at it; a pinhole whose shorter image side
spans `TAN_HALF_FOV` either side of the axis. The head is a sphere of `HEAD_RADIUS` (in units of
the default distance) centred `HEAD_RAISE` above the look-at point: the demo world's framing
(its head radii 0.8-1.16 and the look-at 0.35 below the head centre, at distance 6). Pixels that
miss the sphere lie on the plane through its centre facing the camera. Both the source and the
target depth come from that proxy; kornia's depth unprojection and projection do the rest (as
`kornia.geometry.depth.warp_frame_depth`, but with the border repeated where a ray leaves the
picture, not black).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from kornia.geometry.camera.perspective import project_points
from kornia.geometry.conversions import normalize_pixel_coordinates
from kornia.geometry.depth import depth_to_3d_v2
from kornia.geometry.linalg import transform_points

TAN_HALF_FOV = 0.29  # the demo world's lens (synthetic/scene.py)
HEAD_RADIUS = 0.95 / 6.0  # the head's mean radius over the camera distance 6
HEAD_RAISE = 0.35 / 6.0  # the head centre above the look-at point
# the OpenCV camera axes (x right, y down, z forward) in the camera's own orbit frame (x back
# towards the camera, y the subject's left = image right, z up): rows are x_cv, y_cv, z_cv
_CV_AXES = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (-1.0, 0.0, 0.0))


def intrinsics(height: int, width: int) -> torch.Tensor:
    """The pinhole's (3, 3) matrix in pixel-index coordinates (pixel centres at 0 .. W - 1)."""
    f = min(height, width) / 2.0 / TAN_HALF_FOV
    return torch.tensor([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def world_to_camera(features: torch.Tensor) -> torch.Tensor:
    """(..., 10) camera features (`camera.pose_features`: rotation R, log distance) -> (..., 4, 4)
    the rigid transform from the head frame to the OpenCV camera: p_cv = A R^T (p - d R e_x)."""
    rot = features[..., :9].unflatten(-1, (3, 3))  # (..., 3, 3)
    dist = features[..., 9].exp()  # (...)
    axes = torch.tensor(_CV_AXES, dtype=features.dtype, device=features.device)
    r_w2c = axes @ rot.transpose(-1, -2)  # (..., 3, 3)
    centre = dist[..., None] * rot[..., :, 0]  # (..., 3) the camera position
    out = torch.zeros(*features.shape[:-1], 4, 4, dtype=features.dtype, device=features.device)
    out[..., :3, :3] = r_w2c
    out[..., :3, 3] = -(r_w2c @ centre[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def proxy_depth(w2c: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 4, 4) cameras -> (N, 1, H, W) depth (z) of the sphere's near side where a pixel's ray
    meets it, else of the plane through its centre facing the camera."""
    k = intrinsics(height, width).to(w2c)
    v, u = torch.meshgrid(torch.arange(height, dtype=w2c.dtype, device=w2c.device),
                          torch.arange(width, dtype=w2c.dtype, device=w2c.device), indexing="ij")
    # (H, W, 3) every pixel's ray, scaled to z = 1
    rays = torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)], dim=-1)
    head = torch.tensor([0.0, 0.0, HEAD_RAISE, 1.0], dtype=w2c.dtype, device=w2c.device)
    centre = (w2c @ head)[:, :3]  # (N, 3) the sphere centre in each camera
    # |s ray - c|^2 = r^2  =>  a s^2 - 2 b s + (|c|^2 - r^2) = 0, near root; s is the depth (ray z = 1)
    a = rays.pow(2).sum(-1)[None]  # (1, H, W)
    b = torch.einsum("hwk,nk->nhw", rays, centre)  # (N, H, W)
    disc = b.pow(2) - a * (centre.pow(2).sum(-1) - HEAD_RADIUS**2)[:, None, None]
    near = (b - disc.clamp(min=0).sqrt()) / a
    depth = torch.where(disc > 0, near, centre[:, 2, None, None].expand_as(near))  # (N, H, W)
    return depth[:, None]


def warp_portrait(portrait: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The portrait (B, C, H, W), seen by the `source` camera (B, 10), as every `target` camera
    (B, T, 10) would see it: (B, C, T, H, W). Parts the source does not show (the far side of the
    head) are drawn from wherever their rays land: on strong turns a second, faint outline of the
    head (left empty, or filled from the head's outline, they scored no better: README, Status,
    session 14). A frame whose camera is the source's gets the portrait itself, not a resampled
    copy: a warping model trained on portraits filmed from each clip's own camera trains exactly
    as one without the warp (the demo recipe), at no cost."""
    b, c, h, w = portrait.shape
    n = target.shape[1]
    same = (target == source[:, None]).all(dim=-1)  # (B, T) frames filmed from the portrait's camera
    if bool(same.all()):  # nothing to turn (every training clip of the demo recipe): no resampling
        return portrait.float()[:, :, None].expand(b, c, n, h, w)
    dst = world_to_camera(target.float()).flatten(0, 1)  # (B * T, 4, 4)
    src = world_to_camera(source.float()).repeat_interleave(n, dim=0)  # (B * T, 4, 4)
    src_from_dst = src @ torch.linalg.inv(dst)  # (B * T, 4, 4)
    k = intrinsics(h, w).to(dst).expand(b * n, 3, 3)
    points = depth_to_3d_v2(proxy_depth(dst, h, w)[:, 0], k)  # (B * T, H, W, 3) in the target cameras
    pixels = project_points(transform_points(src_from_dst[:, None], points), k[:, None, None])  # (B * T, H, W, 2)
    grid = normalize_pixel_coordinates(pixels, h, w)  # in [-1, 1], pixel centres at the ends
    images = portrait.float().repeat_interleave(n, dim=0)  # (B * T, C, H, W)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    out = rearrange(out, "(b t) c h w -> b c t h w", b=b)
    return torch.where(same[:, None, :, None, None], portrait.float()[:, :, None], out)
