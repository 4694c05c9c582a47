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
"""

from __future__ import annotations

import torch

from ..conditioning import Conditioning


def reference_planes(cond: Conditioning, like: torch.Tensor) -> torch.Tensor:
    """The portrait where it is on, zeros elsewhere, and a plane of 1 / 0 saying which, for
    every frame of `like` (B, C, T, H, W): (B, C + 1, T, H, W) float32."""
    b, c, n, h, w = like.shape
    on = cond.reference_on().float().to(like.device)[:, None, None, None]  # (B, 1, 1, 1)
    if cond.reference is None:
        portrait = like.new_zeros(b, c, h, w, dtype=torch.float32)
    else:
        portrait = cond.reference.float()
        assert portrait.shape == (b, c, h, w), f"reference must be {(b, c, h, w)}, got {tuple(portrait.shape)}"
    planes = torch.cat([portrait * on, on.expand(b, 1, h, w)], dim=1)  # (B, C + 1, H, W)
    return planes[:, :, None].expand(b, c + 1, n, h, w)  # (B, C + 1, T, H, W)
