"""Where the mouth is in a frame: boxes (cx, cy, w, h) in [0, 1] and the pixels inside them.

The lip reader crops its mouths there, the mouth-weighted loss and the `audio_in_mouth` metric
weigh and count the pixels inside, and a `reference_mask_mouth` model blanks the portrait there.
Data with per-frame `mouth_box`es gives one box per frame; without, every frame takes
`DEFAULT_BOX`, around the mouth of a demo frame from any of the world's views.
"""

from __future__ import annotations

import math

import torch

DEFAULT_BOX = (0.5, 0.57, 0.5, 0.32)  # (cx, cy, w, h) around the mouth of a demo frame, any view


def edges(cx, cy, bw, bh):
    """Left, right, top, bottom of a box (cx, cy, w, h): numbers or tensors alike."""
    return cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2


def box_edges(boxes: torch.Tensor | None, lead: tuple[int, ...], device=None) -> tuple[torch.Tensor, ...]:
    """Left, right, top, bottom in [0, 1], each of shape `lead`, of (..., 4) = (cx, cy, w, h)
    boxes (None: the default box for every frame)."""
    if boxes is None:
        boxes = torch.tensor(DEFAULT_BOX, device=device).expand(*lead, 4)
    return edges(*boxes.unbind(-1))


def default_box_pixels(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels `box_mask` puts inside the default box of a height x width
    frame, from plain numbers (a model built on the meta device reads no tensor values)."""
    left, right, top, bottom = edges(*DEFAULT_BOX)
    # pixel i sits at i / (size - 1): inside from ceil(start * (size - 1)) to floor(end * (size - 1))
    rows = slice(math.ceil(top * (height - 1)), math.floor(bottom * (height - 1)) + 1)
    cols = slice(math.ceil(left * (width - 1)), math.floor(right * (width - 1)) + 1)
    return rows, cols


def box_mask(boxes: torch.Tensor | None, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """(*lead, H, W) bool of `shape`: the pixels inside each frame's box (boxes (*lead, 4), pixel
    i at i / (size - 1) as the lip reader's crops place it; None: the default box)."""
    *lead, h, w = shape
    left, right, top, bottom = (e[..., None, None] for e in box_edges(boxes, tuple(lead), device))  # (*lead, 1, 1)
    ys = torch.linspace(0, 1, h, device=left.device)[:, None]  # (H, 1)
    xs = torch.linspace(0, 1, w, device=left.device)[None, :]  # (1, W)
    return (xs >= left) & (xs <= right) & (ys >= top) & (ys <= bottom)
