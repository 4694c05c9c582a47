"""Paint the face (eyes, blinks, brows, lips, open mouth) onto the head's surface.

Features are soft-edged ellipses in the head's local (x, y) coordinates, restricted to the front
of the head (local z > 0), so they turn, foreshorten and hide with the head exactly like the
surface they sit on. Edges are anti-aliased with a ramp one pixel wide (``pixel_world``: the
size of a pixel at the head's distance).

Expression, per frame (each (B,)):
  * ``jaw`` 0..1, mouth opening: the dark mouth interior grows from a closed line to a tall oval
    (teeth show at its top edge) and the mouth drops slightly;
  * ``mouth_width`` -1..1: narrow (rounded, 'oo') to wide ('ee'), 0 is neutral;
  * ``blink`` 0..1: the upper lid closes the eye, 1 leaves a closed-eye line.
"""

from __future__ import annotations

import torch

_EYE_WHITE = (0.97, 0.97, 0.95)
_OUTLINE = (0.10, 0.07, 0.07)
_PUPIL = (0.03, 0.03, 0.04)
_MOUTH = (0.28, 0.06, 0.08)
_TEETH = (0.96, 0.95, 0.90)


def _col(rgb: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rgb, dtype=like.dtype).view(1, 3, 1, 1)  # (1, 3, 1, 1)


def _b(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1)  # (B,) -> (B, 1, 1)


def ellipse(
    u: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, cv: torch.Tensor,
    ru: torch.Tensor, rv: torch.Tensor, pw: torch.Tensor, angle: torch.Tensor | None = None,
) -> torch.Tensor:
    """Anti-aliased coverage (B, H, W) of an ellipse; every parameter is (B,), angle in radians."""
    du, dv = u - _b(cu), v - _b(cv)
    if angle is not None:
        ca, sa = _b(torch.cos(angle)), _b(torch.sin(angle))
        du, dv = ca * du + sa * dv, -sa * du + ca * dv
    iu, iv = 1.0 / _b(ru), 1.0 / _b(rv)
    du, dv = du * iu, dv * iv  # normalised offsets
    d2 = du * du + dv * dv
    grad = 2.0 * torch.sqrt((du * iu) ** 2 + (dv * iv) ** 2).clamp_min(1e-6)
    return ((1.0 - d2) / grad / _b(pw) + 0.5).clamp(0.0, 1.0)


def _over(canvas: torch.Tensor, colour: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Alpha-blend ``colour`` ((B,3) or (1,3,1,1)) onto canvas (B, 3, H, W) with mask (B, H, W)."""
    if colour.dim() == 2:
        colour = colour[..., None, None]  # (B, 3, 1, 1)
    m = mask.unsqueeze(1)  # (B, 1, H, W)
    return canvas + m * (colour - canvas)


def _mouth_geometry(ident: dict[str, torch.Tensor], jaw: torch.Tensor, widen: torch.Tensor):
    """Half-width, centre height and interior half-height of the mouth (each (B,)), local units."""
    mw = 0.19 * ident["mouth_width"] * (1.0 + 0.28 * widen)
    mcv = -0.52 * ident["radii"][:, 1] - 0.05 * jaw
    inner_h = 0.012 + 0.15 * jaw
    return mw, mcv, inner_h


def mouth_reach(local: torch.Tensor, ident: dict[str, torch.Tensor], pixel_world: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: the head-surface points ``local`` (B, 3, H, W) that any mouth of the
    identity can cover, lips and their anti-aliased edge included (jaw 0..1, width -1..1):
    where lip sync happens."""
    x, y, z = local.unbind(1)  # each (B, H, W)
    one = torch.ones(local.shape[0], device=local.device)
    mw, low, open_h = _mouth_geometry(ident, one, one)  # the widest, open mouth reaches lowest
    _, top, shut_h = _mouth_geometry(ident, 0 * one, one)  # the shut one sits highest
    lip = 0.045 + pixel_world  # the lips' margin around the interior (as painted below) and their edge
    inside_x = x.abs() <= _b(mw + 0.035 + pixel_world)
    inside_y = (y <= _b(top + shut_h + lip)) & (y >= _b(low - open_h - lip))
    return inside_x & inside_y & (z > 0)


def paint_face(
    local: torch.Tensor,
    ident: dict[str, torch.Tensor],
    expression: torch.Tensor,
    pixel_world: torch.Tensor,
) -> torch.Tensor:
    """Colour (B, 3, H, W) of the head surface at local hit points ``local`` (B, 3, H, W).

    expression: (B, 3) = (jaw, mouth_width, blink).
    """
    x, y, z = local.unbind(1)  # each (B, H, W)
    hr = ident["radii"]
    pw = pixel_world
    jaw, widen, blink = (expression[:, i].clamp(-1.0, 1.0) for i in range(3))
    jaw, blink = jaw.clamp(0.0, 1.0), blink.clamp(0.0, 1.0)
    front = ((z / _b(hr[:, 2]) - 0.15) / 0.15).clamp(0.0, 1.0)  # only the front of the head
    skin = ident["skin"]
    canvas = skin[..., None, None].expand(-1, 3, *x.shape[1:]).clone()  # (B, 3, H, W)

    # 1. eyes: outline, lid, white, iris, pupil, lash line that follows the blink
    size = ident["eye_size"]
    eru, erv = 0.135 * size, 0.10 * size
    ecv = 0.06 * hr[:, 1]
    lid = ecv + erv * (1.0 - 2.05 * blink)  # upper-lid height
    lid_mask = ((_b(lid) - y) / _b(pw) + 0.5).clamp(0.0, 1.0)  # 1 below the lid line
    for side in (-1.0, 1.0):
        ecu = side * ident["eye_spacing"]
        rim = ellipse(x, y, ecu, ecv, eru + 0.035, erv + 0.03, pw) * front
        below_lid = ((_b(lid) + 0.03 - y) / _b(pw) + 0.5).clamp(0.0, 1.0)
        canvas = _over(canvas, _col(_OUTLINE, x), rim * below_lid)
        eye = ellipse(x, y, ecu, ecv, eru, erv, pw) * front
        canvas = _over(canvas, skin * 0.9, eye)
        open_eye = eye * lid_mask
        canvas = _over(canvas, _col(_EYE_WHITE, x), open_eye)
        iris = ellipse(x, y, ecu, ecv - 0.01, 0.075 * size, 0.075 * size, pw) * open_eye
        canvas = _over(canvas, ident["iris"], iris)
        pupil = ellipse(x, y, ecu, ecv - 0.01, 0.036 * size, 0.036 * size, pw) * open_eye
        canvas = _over(canvas, _col(_PUPIL, x), pupil)
        lash = ((0.025 - (y - _b(lid)).abs()) / _b(pw) + 0.5).clamp(0.0, 1.0)
        lash = lash * ellipse(x, y, ecu, ecv, eru + 0.035, erv + 0.05, pw) * front
        canvas = _over(canvas, _col(_OUTLINE, x), lash)

        # 2. brows: a thin tilted ellipse above each eye, inner ends mirrored
        brow = ellipse(x, y, ecu, ecv + erv + 0.12, 0.16 + 0 * size, 0.035 * ident["brow_thickness"],
                       pw, angle=-side * ident["brow_tilt"]) * front
        canvas = _over(canvas, ident["brows"], brow)

    # 3. mouth: lips, dark interior whose height follows the jaw, teeth at the top edge
    mw, mcv, inner_h = _mouth_geometry(ident, jaw, widen)
    zero = torch.zeros_like(mw)
    lips = ellipse(x, y, zero, mcv, mw + 0.035, inner_h + 0.045, pw) * front
    canvas = _over(canvas, ident["lips"], lips)
    inner = ellipse(x, y, zero, mcv, mw, inner_h, pw) * front
    canvas = _over(canvas, _col(_MOUTH, x), inner)
    teeth = ellipse(x, y, zero, mcv + inner_h, mw * 0.8, 0.035 + 0 * mw, pw) * inner
    show = ((jaw - 0.1) / 0.15).clamp(0.0, 1.0)  # teeth fade in as the mouth opens
    canvas = _over(canvas, _col(_TEETH, x), teeth * _b(show))
    return canvas
