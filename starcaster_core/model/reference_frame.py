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

With `reference_mask_mouth` the portrait is blanked inside the default mouth box before it is
turned, as Wav2Lip masks the lower half of its faces: copied, a portrait's mouth is the one thing
no frame should take from it. Measured (README, Status, session 18): the shipped model, given a
portrait, draws the mouth shut whatever the speech; 250 steps of stage 2 with the mouth box
blanked moved the share of the speech's change inside the mouth box (`audio_in_mouth`) from 0.04
to 0.14. That hole was fixed in the frame, and pinned the head there (camera follow 0.72 -> 0.24),
so the hole is now cut before the warp and turns with the face. The whole demo recipe with it:
`audio_in_mouth` 0.226 against the shipped model's 0.048, but the box drawn as a blur (fidelity
2.38 against 0.695), so it is off in `demo`.
"""

from __future__ import annotations

import torch

from ..camera import FRONTAL, pose_features
from ..conditioning import Conditioning
from ..mouth_box import box_mask
from ..view_warp import warp_portrait


def mouth_masked(portrait: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C + 1, H, W): the portrait blanked inside the default mouth box, beside a
    plane that is 0 there and 1 elsewhere (warped with the portrait, the hole turns with the face)."""
    b, _, h, w = portrait.shape
    keep = (~box_mask(None, (h, w), portrait.device)).to(portrait.dtype).expand(b, 1, h, w)
    return torch.cat([portrait * keep, keep], dim=1)


def turned_portrait(cond: Conditioning, device: torch.device, mask_mouth: bool = False) -> torch.Tensor:
    """The portrait (a reference is given) turned from the portrait's camera to each of the
    conditioning's frame cameras (`view_warp.py`): (B, C, T, H, W) float32; with `mask_mouth`,
    `mouth_masked`'s (B, C + 1, T, H, W)."""
    source = cond.reference_camera
    if source is None:  # the default frontal camera
        source = pose_features(torch.tensor(FRONTAL, device=device)).expand(cond.batch, -1)
    portrait = cond.reference.float()
    return warp_portrait(mouth_masked(portrait) if mask_mouth else portrait, source.float(), cond.camera.float())


def reference_planes(cond: Conditioning, like: torch.Tensor, warp: bool = False, mask_mouth: bool = False,
                     ) -> torch.Tensor:
    """The portrait where it is on, zeros elsewhere, and a plane of 1 / 0 saying which, for
    every frame of `like` (B, C, T, H, W): (B, C + 1, T, H, W) float32. With `warp`, each
    frame's portrait is turned from the portrait's camera to that frame's: the conditioning's
    `reference_views` when it has them, else warped here. With `mask_mouth`, the portrait and
    its plane are 0 inside the default mouth box (`mouth_box.DEFAULT_BOX`) of the portrait,
    turned with it."""
    b, c, n, h, w = like.shape
    on = cond.reference_on().float().to(like.device)[:, None, None, None, None]  # (B, 1, 1, 1, 1)
    if cond.reference is None:
        return torch.cat([like.new_zeros(b, c, n, h, w, dtype=torch.float32), on.expand(b, 1, n, h, w)], dim=1)
    got, channels = tuple(cond.reference.shape), c + int(mask_mouth)
    assert got == (b, c, h, w), f"reference must be {(b, c, h, w)}, got {got}"
    if warp and cond.reference_views is not None:
        views = cond.reference_views.float()
        got = tuple(views.shape)
        assert got == (b, channels, n, h, w), f"reference_views must be {(b, channels, n, h, w)}, got {got}"
    elif warp:
        views = turned_portrait(cond, like.device, mask_mouth)  # (B, C [+ 1], T, H, W)
    else:
        portrait = cond.reference.float()
        views = (mouth_masked(portrait) if mask_mouth else portrait)[:, :, None]  # (B, C [+ 1], 1, H, W)
    plane = on * views[:, c:] if mask_mouth else on  # (B, 1, T or 1, H or 1, W or 1)
    return torch.cat([(views[:, :c] * on).expand(b, c, n, h, w), plane.expand(b, 1, n, h, w)], dim=1)
