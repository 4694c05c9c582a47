"""The previous frame as a pixel input: what an autoregressive video model can most easily copy.

Every frame of a chunk also reads the last frame before its chunk (at full resolution, in the
conv head, and patchified, beside its own noisy pixels), the way next-frame video models
condition on the frames they continue. Through attention alone the demo model's estimate from
pure noise after clean context stayed a blurred, patchy face (see `eval.probe`): copying a face
from context tokens through 8x8 patches of width 128 is slow to learn. This input makes "the
same face, the mouth the audio asks for" a short path. Measured on the demo world (README,
Status, session 6): with the frame prior it gave the sharpest frames so far, but neither run
lip-synced better and both lost quality late in a clip (copying compounds errors).

The previous frame enters as frame * (1 - level) and a plane of its level, as the head's skip
reads x_t: a clean context frame fully, a noisy one (diffusion forcing trains chunks at every
level) faded, and for the first chunk of a video (no previous frame) nothing at level 1.
"""

from __future__ import annotations

import torch

Previous = tuple[torch.Tensor, torch.Tensor]  # pixels (B, C, 1, H, W), noise level (B, 1)


def previous_frames(x: torch.Tensor, t: torch.Tensor, offset: int, block: int,
                    previous: Previous | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, C, T, H, W) frames [offset, offset + T) at levels t (B, T); chunks of `block`
    frames by global index. `previous` is the frame before the first chunk that starts in or
    before x (None: there is none, as at a video's start: pure noise). Returns, for every frame,
    the last frame before its chunk and that frame's level: (B, C, T, H, W), (B, T); the model
    reads them `faded` (frame * (1 - level) beside a plane of the level)."""
    b, c, n, h, w = x.shape
    if previous is None:
        previous = (x.new_zeros(b, c, 1, h, w), t.new_ones(b, 1))
    frames = torch.cat([previous[0].to(x), x], dim=2)  # (B, C, 1 + T, H, W): index 0 = `previous`
    levels = torch.cat([previous[1].to(t), t], dim=1)  # (B, 1 + T)
    starts = torch.div(torch.arange(offset, offset + n), block, rounding_mode="floor") * block  # (T,)
    index = (starts - offset).clamp(min=0).to(x.device)  # frame start - 1, shifted by the leading `previous`
    return frames[:, :, index], levels[:, index]
