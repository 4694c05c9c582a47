"""Ray-cast ellipsoids with analytic anti-aliasing, shading and per-pixel depth compositing.

Camera space: the camera sits at the origin and looks down -z, +x right, +y up. The ray through
image-plane point (x, y) is d = (x, y, -1), so the ray parameter t of a hit is its depth.

For an ellipsoid with centre c, rotation R (local -> camera) and radii s, the map
A = S^-1 R^T sends camera space to the ellipsoid's unit-sphere space. With o' = -A c (the camera
origin there) the hit condition |o' + t A d|^2 = 1 is the quadratic a t^2 + 2 b t + c = 0 with

    a = d^T (A^T A) d,   b = (A^T o') . d,   c = |o'|^2 - 1,

all polynomials in (x, y) whose coefficients depend only on the primitive. The discriminant
Delta = b^2 - a c is a quadratic in (x, y) whose zero set is exactly the projected silhouette, so
Delta / |grad Delta| is a signed distance to the silhouette in image units: coverage is a one-pixel
ramp of it (clean anti-aliased edges at any resolution, no supersampling). Everything is evaluated
densely over (B, P, H, W) with the separable (x-only, y-only) parts precomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Ellipsoids:
    """P ellipsoids per scene for a batch of B scenes, in camera space."""

    centre: torch.Tensor  # (B, P, 3)
    rotation: torch.Tensor  # (B, P, 3, 3) local -> camera
    radii: torch.Tensor  # (B, P, 3)
    enabled: torch.Tensor  # (B, P) 1.0 draws the primitive, 0.0 hides it


@dataclass(frozen=True)
class Layers:
    """Per-primitive rasterised layers (before compositing)."""

    alpha: torch.Tensor  # (B, P, H, W) coverage in 0..1
    depth: torch.Tensor  # (B, P, H, W) distance along -z; +inf where not covered
    shade: torch.Tensor  # (B, P, H, W) diffuse + ambient lighting factor
    unit_point: torch.Tensor  # (B, Q, 3, H, W) hit points in unit-sphere space of the first Q


def image_plane(height: int, width: int, tan_half: float, *, device: torch.device | None = None):
    """Image-plane coordinates of pixel centres: xs (W,), ys (H,), and the size of one pixel.

    The shorter image side spans [-tan_half, tan_half], so framing is resolution independent.
    """
    half = min(height, width) / 2.0
    pixel = tan_half / half
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2.0) * pixel
    ys = -(torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2.0) * pixel
    return xs, ys, pixel


def cast(
    ell: Ellipsoids,
    xs: torch.Tensor,
    ys: torch.Tensor,
    pixel: float,
    light: torch.Tensor,
    *,
    n_points: int = 1,
    ambient: float = 0.58,
) -> Layers:
    """Rasterise every ellipsoid over the image plane.

    ``light`` (3,) is a unit direction towards the light in camera space. Hit points in unit space
    are returned for the first ``n_points`` primitives (used to paint the face on the head).
    """
    R, s, c_cam = ell.rotation, ell.radii, ell.centre
    A = R.transpose(-1, -2) / s.unsqueeze(-1)  # (B, P, 3, 3) = S^-1 R^T (row k divided by s_k)
    o = -(A @ c_cam.unsqueeze(-1)).squeeze(-1)  # (B, P, 3) camera origin in unit space
    M = A.transpose(-1, -2) @ A  # (B, P, 3, 3)
    n = (A.transpose(-1, -2) @ o.unsqueeze(-1)).squeeze(-1)  # (B, P, 3)
    cc = (o * o).sum(-1) - 1.0  # (B, P)

    def k(v: torch.Tensor) -> torch.Tensor:
        return v[..., None, None]  # (B, P) -> (B, P, 1, 1)

    X = xs.view(1, 1, 1, -1)  # (1, 1, 1, W)
    Y = ys.view(1, 1, -1, 1)  # (1, 1, H, 1)
    m00, m11, m22 = k(M[..., 0, 0]), k(M[..., 1, 1]), k(M[..., 2, 2])
    m01, m02, m12 = k(M[..., 0, 1]), k(M[..., 0, 2]), k(M[..., 1, 2])
    n0, n1, n2 = k(n[..., 0]), k(n[..., 1]), k(n[..., 2])
    c = k(cc)

    # 1. quadratic coefficients over the image (d = (x, y, -1))
    a = (m00 * X - 2 * m02) * X + ((m11 * Y - 2 * m12) * Y + m22) + (2 * m01) * (X * Y)  # (B,P,H,W)
    b = n0 * X + (n1 * Y - n2)  # (B, P, H, W)
    disc = b * b - a * c  # (B, P, H, W)

    # 2. signed distance to the silhouette -> one-pixel coverage ramp
    gx = 2 * b * n0 - c * (2 * (m00 * X - m02) + (2 * m01) * Y)
    gy = 2 * b * n1 - c * (2 * (m11 * Y - m12) + (2 * m01) * X)
    grad = torch.sqrt(gx * gx + gy * gy).clamp_min_(1e-12)
    alpha = (disc / grad).div_(pixel).add_(0.5).clamp_(0.0, 1.0)
    alpha = alpha * k(ell.enabled)

    # 3. depth of the near hit (closest approach in the anti-aliasing fringe)
    t = (-b - torch.sqrt(disc.clamp(min=0.0))) / a  # (B, P, H, W)
    depth = torch.where(alpha > 0, t, torch.full_like(t, float("inf")))

    # 4. Lambert shading: normal = R S^-1 p', so n.L = p'.(S^-1 R^T L) / |S^-1 p'|
    ell_light = A @ light.to(A)  # (B, P, 3)  (A = S^-1 R^T)
    inv_s2 = 1.0 / (s * s)  # (B, P, 3)
    dot = torch.zeros_like(t)
    norm2 = torch.zeros_like(t)
    points = []
    for i in range(3):
        d_i = k(A[..., i, 0]) * X + (k(A[..., i, 1]) * Y - k(A[..., i, 2]))  # (B, P, H, W)
        p_i = k(o[..., i]) + t * d_i  # (B, P, H, W) unit-space hit coordinate i
        dot += k(ell_light[..., i]) * p_i
        norm2 += k(inv_s2[..., i]) * p_i * p_i
        points.append(p_i[:, :n_points])
    lambert = (dot / torch.sqrt(norm2.clamp_min(1e-12))).clamp_(min=0.0)
    shade = lambert.mul_(1.0 - ambient).add_(ambient)
    unit_point = torch.stack(points, dim=2)  # (B, Q, 3, H, W)
    return Layers(alpha=alpha, depth=depth, shade=shade, unit_point=unit_point)


def composite_weights(
    alpha: torch.Tensor, depth: torch.Tensor, soft_depth: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back 'over' compositing, sorted per pixel by depth.

    Where two surfaces intersect (hairline, nose, ears) the hard depth test would leave a jagged
    curve, so the two front-most layers share their weight by s = sigmoid((t1 - t0) / soft_depth)
    (s = 1 is the hard test); the total coverage is unchanged. ``soft_depth`` is (B,) or a float,
    about half a pixel's size at the subject's distance.

    Returns per-primitive weights (B, P, H, W) in the original primitive order and the remaining
    transmittance (B, 1, H, W) that the background receives.
    """
    order_depth, order = torch.sort(depth, dim=1)  # (B, P, H, W)
    a_sorted = torch.gather(alpha, 1, order)  # (B, P, H, W)
    trans = torch.cumprod(1.0 - a_sorted, dim=1)  # (B, P, H, W) transmittance after each layer
    before = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
    w_sorted = a_sorted * before
    soft = torch.as_tensor(soft_depth, dtype=depth.dtype)
    if bool((soft > 0).any()):
        gap = (order_depth[:, 1] - order_depth[:, 0]).nan_to_num(posinf=1e6)  # (B, H, W)
        s = torch.sigmoid(gap / soft.clamp_min(1e-6).reshape(-1, 1, 1))  # (B, H, W) in [0.5, 1]
        a0, a1 = a_sorted[:, 0], a_sorted[:, 1]
        w_sorted[:, 0] = a0 * (1.0 - a1 * (1.0 - s))
        w_sorted[:, 1] = a1 * (1.0 - a0 * s)
    weights = torch.empty_like(w_sorted).scatter_(1, order, w_sorted)
    return weights, trans[:, -1:]
