"""A portrait of the identity as a pixel input: the shortest path from "who" to the frame.

With `reference_frame`, every frame reads the portrait the identity was made from (resized to
the model's frames), patchified beside its own noisy pixels and at full resolution in the conv
head, with a plane that says whether a portrait is there. Why: through the identity embedding
alone (adaLN and sink tokens) the demo model's estimate from pure noise hardly depended on the
identity (across 6 held-out identities its frames varied by 0.003-0.006 in MSE where the
ground truth varies by 0.09), so every video showed the same blurred face; a short run with
this input drew the right person from the first chunk (README, Status, session 8).

The embedding stays the identity (a soft constraint): training drops the portrait for a share
of the clips (`TrainConfig.reference_dropout`), so identities without a portrait (mixes, random
draws, saved embeddings) still work, if worse (measured in the README). The portrait is the
data's own neutral, frontal one where it has one (as users and the evaluator give portraits),
else another moment of the clip; either way its mouth, blink and head pose are not the ones to
draw. Switching the identity off (classifier-free guidance) switches the portrait off too.

With `reference_warp` the portrait is first turned from the camera it was taken from
(`Conditioning.reference_camera`; none given: the default frontal one) to each frame's camera
(`view_warp.py`): copied as read, it already shows roughly the view to draw. The sampler
warps once per chunk (`STARCasterDenoiser.with_reference_views`), not in each of its passes.
"""

from __future__ import annotations

import torch

from ..camera import FRONTAL, pose_features
from ..conditioning import Conditioning
from ..view_warp import warp_portrait


def turned_portrait(cond: Conditioning, device: torch.device) -> torch.Tensor:
    """The portrait (a reference is given) turned from the portrait's camera to each of the
    conditioning's frame cameras (`view_warp.py`): (B, C, T, H, W) float32."""
    source = cond.reference_camera
    if source is None:  # the default frontal camera
        source = pose_features(torch.tensor(FRONTAL, device=device)).expand(cond.batch, -1)
    return warp_portrait(cond.reference.float(), source.float(), cond.camera.float())


def reference_planes(cond: Conditioning, like: torch.Tensor, warp: bool = False) -> torch.Tensor:
    """The portrait where it is on, zeros elsewhere, and a plane of 1 / 0 saying which, for
    every frame of `like` (B, C, T, H, W): (B, C + 1, T, H, W) float32. With `warp`, each
    frame's portrait is turned from the portrait's camera to that frame's: the conditioning's
    `reference_views` when it has them, else warped here."""
    b, c, n, h, w = like.shape
    on = cond.reference_on().float().to(like.device)[:, None, None, None, None]  # (B, 1, 1, 1, 1)
    if cond.reference is None:
        portrait = like.new_zeros(b, c, 1, h, w, dtype=torch.float32)
    else:
        got = tuple(cond.reference.shape)
        assert got == (b, c, h, w), f"reference must be {(b, c, h, w)}, got {got}"
        portrait = cond.reference.float()[:, :, None]  # (B, C, 1, H, W)
        if warp and cond.reference_views is not None:
            got = tuple(cond.reference_views.shape)
            assert got == (b, c, n, h, w), f"reference_views must be {(b, c, n, h, w)}, got {got}"
            portrait = cond.reference_views.float()
        elif warp:
            portrait = turned_portrait(cond, like.device)  # (B, C, T, H, W)
    portrait = (portrait * on).expand(b, c, n, h, w)
    return torch.cat([portrait, on.expand(b, 1, n, h, w)], dim=1)  # (B, C + 1, T, H, W)
