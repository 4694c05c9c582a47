"""Batched renderer of the synthetic talking avatar: identity + expression + pose + camera -> RGB.

``render_frames`` draws B frames at once (any resolution; 64x64 for the demo preset). The head is a
set of ellipsoids (head, nose, ears, up to three hair volumes, neck, shoulders; see ``scene.py``)
that are ray-cast analytically with one-pixel anti-aliased silhouettes and composited per pixel
by depth (``raster.py``), so far-side features hide behind the head and a turned head shows its
hair and ears. The face (eyes, blinks, brows, lips, mouth) is painted on the head's surface
(``paint.py``). The background is a vertical gradient from the identity's background colour.

Conventions (shared with the rest of the pack):
  * expression (B, 3) = (jaw 0..1, mouth_width -1..1, blink 0..1)
  * pose (B, 3) = head (yaw, pitch, roll) in degrees
  * camera (B, 4) = (yaw_deg, pitch_deg, roll_deg, distance), distance 1.0 = default framing
"""

from __future__ import annotations

from dataclasses import replace

import torch

from .identity import IDENTITY_DIM, IdentityParams
from .paint import mouth_reach, paint_face
from .raster import Ellipsoids, cast, composite_weights, image_plane
from .scene import HEAD, TAN_HALF_FOV, Scene, build_scene, decode_identity

IdentityLike = IdentityParams | torch.Tensor | list[IdentityParams]
NEUTRAL_CAMERA = (0.0, 0.0, 0.0, 1.0)


def identity_rows(identity: IdentityLike) -> torch.Tensor:
    """Identity (params, list of params, (D,) or (B, D) vectors) -> (B or 1, IDENTITY_DIM)."""
    if isinstance(identity, IdentityParams):
        return identity.identity_vector().unsqueeze(0)
    if isinstance(identity, list):
        return torch.stack([p.identity_vector() for p in identity])
    return identity.float().reshape(-1, IDENTITY_DIM)


def _rows(value: torch.Tensor | None, batch: int, width: int, default: tuple[float, ...]):
    if value is None:
        value = torch.tensor(default)
    value = torch.as_tensor(value, dtype=torch.float32).reshape(-1, width)  # (B or 1, width)
    if value.shape[0] == 1:
        value = value.expand(batch, width)
    assert value.shape[0] == batch, f"expected {batch} rows of {width}, got {value.shape[0]}"
    return value


def _background(ident: dict[str, torch.Tensor], height: int) -> torch.Tensor:
    """(B, 3, H, 1) vertical gradient: background colour at the top, darker towards the bottom."""
    top = ident["background"]  # (B, 3)
    bottom = top * (1.0 - 0.55 * ident["background_gradient"]).unsqueeze(-1)
    frac = torch.linspace(0.0, 1.0, height).view(1, 1, height, 1)
    return top[..., None, None] + frac * (bottom - top)[..., None, None]


def _drop_unused(scene: Scene) -> Scene:
    """Remove primitives that no frame of the batch draws (e.g. a hair slot the style lacks)."""
    ell = scene.ellipsoids
    keep = ell.enabled.any(0)  # (P,)
    if bool(keep.all()):
        return scene
    assert bool(keep[HEAD]), "the head is always drawn"
    idx = torch.nonzero(keep)[:, 0]  # HEAD (0) stays first
    return replace(scene, colours=scene.colours[:, idx], ellipsoids=Ellipsoids(
        centre=ell.centre[:, idx], rotation=ell.rotation[:, idx], radii=ell.radii[:, idx],
        enabled=ell.enabled[:, idx]))


def _paint_visible_front(local: torch.Tensor, head_alpha: torch.Tensor, ident: dict,
                        expr: torch.Tensor, pixel_world: torch.Tensor) -> torch.Tensor:
    """Paint the face only inside the batch's bounding box of the visible front of the head
    (features live at local z > 0); elsewhere the head is plain skin. (B, 3, H, W)."""
    B, _, H, W = local.shape
    face = ident["skin"][..., None, None].expand(B, 3, H, W).clone()
    front = (head_alpha > 0) & (local[:, 2] > 0)  # (B, H, W)
    rows, cols = front.any(dim=(0, 2)), front.any(dim=(0, 1))
    if not bool(rows.any()):
        return face
    r = torch.nonzero(rows)[:, 0]
    c = torch.nonzero(cols)[:, 0]
    r0, r1, c0, c1 = int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1
    face[:, :, r0:r1, c0:c1] = paint_face(local[:, :, r0:r1, c0:c1].contiguous(), ident, expr,
                                          pixel_world)
    return face


@torch.no_grad()
def render_frames(
    identity: IdentityLike,
    expression: torch.Tensor | None = None,
    pose: torch.Tensor | None = None,
    camera: torch.Tensor | None = None,
    *,
    size: int | tuple[int, int] = 64,
    batch: int | None = None,
    with_mouth_box: bool = False,
):
    """Render frames (B, 3, H, W), float 0..1; with ``with_mouth_box`` also each frame's mouth
    box (B, 4) (see ``mouth_boxes``).

    Any of expression (B, 3), pose (B, 3), camera (B, 4) may be one row or None (neutral); the
    batch size is taken from the first per-frame input with more than one row (or ``batch``).
    """
    height, width = (size, size) if isinstance(size, int) else size
    id_rows = identity_rows(identity)
    if batch is None:
        rows = [t.reshape(-1, w).shape[0] for t, w in ((expression, 3), (pose, 3), (camera, 4))
                if t is not None]
        batch = max([id_rows.shape[0], *rows])
    ident = decode_identity(_rows(id_rows, batch, IDENTITY_DIM, ()))
    expr = _rows(expression, batch, 3, (0.0, 0.0, 0.0))
    pose = _rows(pose, batch, 3, (0.0, 0.0, 0.0))
    camera = _rows(camera, batch, 4, NEUTRAL_CAMERA)

    # 1. place the primitives and ray-cast them
    scene = _drop_unused(build_scene(ident, pose, camera))
    xs, ys, pixel = image_plane(height, width, TAN_HALF_FOV)
    layers = cast(scene.ellipsoids, xs, ys, pixel, scene.light, n_points=1)

    # 2. paint the face on the head's local surface points
    local = layers.unit_point[:, HEAD] * ident["radii"][..., None, None]  # (B, 3, H, W)
    face = _paint_visible_front(local, layers.alpha[:, HEAD], ident, expr, pixel * scene.head_depth)

    # 3. composite front to back over the background
    pixel_world = pixel * scene.head_depth  # (B,) size of a pixel at the head
    weights, trans = composite_weights(layers.alpha, layers.depth, 0.25 * pixel_world)
    lit = weights * layers.shade  # (B, P, H, W)
    colours = scene.colours.clone()
    colours[:, HEAD] = 0.0
    image = torch.einsum("bphw,bpc->bchw", lit, colours)  # (B, 3, H, W)
    image += lit[:, HEAD].unsqueeze(1) * face
    image += trans * _background(ident, height)
    image = image.clamp_(0.0, 1.0)
    if with_mouth_box:
        return image, mouth_boxes(mouth_reach(local, ident, pixel_world) & (weights[:, HEAD] > 0.5))
    return image


def mouth_boxes(reach: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """(B, 4) boxes (cx, cy, w, h) in [0, 1] (0 and 1: the first and last pixel centres, the
    layout of the trainer's mouth crops) around the visible pixels of ``reach`` (B, H, W) that a
    mouth can cover, ``pad`` pixels wider on each side; the whole frame where none is visible."""
    _, h, w = reach.shape
    rows = torch.arange(h, dtype=torch.float32)[None, :, None].expand_as(reach)  # (B, H, W)
    cols = torch.arange(w, dtype=torch.float32)[None, None, :].expand_as(reach)
    big = float(max(h, w))
    top = torch.where(reach, rows, big).amin(dim=(1, 2)) - pad  # (B,)
    bottom = torch.where(reach, rows, -big).amax(dim=(1, 2)) + pad
    left = torch.where(reach, cols, big).amin(dim=(1, 2)) - pad
    right = torch.where(reach, cols, -big).amax(dim=(1, 2)) + pad
    box = torch.stack([(left + right) / 2 / (w - 1), (top + bottom) / 2 / (h - 1),
                       (right - left) / (w - 1), (bottom - top) / (h - 1)], dim=-1)  # (B, 4)
    whole = box.new_tensor([0.5, 0.5, 1.0, 1.0])
    return torch.where(reach.flatten(1).any(dim=1)[:, None], box, whole)


def render_portrait(identity: IdentityParams | torch.Tensor, size: int | tuple[int, int] = 256):
    """A neutral, frontal portrait as an (H, W, 3) float image in 0..1 (ComfyUI IMAGE layout)."""
    frame = render_frames(identity, size=size, batch=1)  # (1, 3, H, W)
    return frame[0].permute(1, 2, 0).contiguous()  # (H, W, 3)
