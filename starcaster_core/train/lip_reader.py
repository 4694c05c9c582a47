"""A small lip reader: mouth crops -> speech features (and mouth opening, where known).

Trained on ground-truth frames, then frozen. Stage 2 of training compares its features on the
model's predicted clean frames with its features on the real frames (the lip-reading loss).

Two kinds. A `conv` reader (a small CNN) can be matched by patterns no mouth has: stage 2 drew a
texture of them over whole frames (README, Status, session 9). A `linear` reader's features are
a linear map W of the crop's pixels, so the lip-reading loss |W (x0_pred - x0)|^2 is a pixel loss
along the directions that tell speech apart: like the flow loss, its expectation is least at the
clean frame's conditional mean, so the two pull the same way and no pattern pays; it weighs up
the mouth's speech-bearing pixels instead. Measured: no texture, but in 250 steps of stage 2
hardly any lip sync either (0.15 against 0.82 with the conv reader).

A robust conv reader (`TrainConfig.lip_reader_robust`, session 13) trains on the crops it reads
worst within an L2 radius (`adversarial_crops`). The input gradient of the plain reader, what
the lip-reading loss backpropagates into a frame, is pixel noise; that of the robust one (radius
0.5) is a mouth opening or closing (the picture in README, Status, session 13). Radii of 1 and
more left it reading nothing: the mouth of a 64x64 frame is a few pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import crop_and_resize
from torch import nn

from ..mouth_box import box_edges, box_mask

CROP = 24  # side of the mouth crop, pixels
ReaderKind = Literal["conv", "linear"]


def mouth_crops(frames: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
    """frames (N, 3, H, W), boxes (N, 4) = (cx, cy, w, h) in [0, 1] or None -> (N, 3, CROP, CROP)."""
    n, _, h, w = frames.shape
    left, right, top, bottom = box_edges(boxes, (n,), frames.device)
    x0, x1, y0, y1 = left * (w - 1), right * (w - 1), top * (h - 1), bottom * (h - 1)
    corners = torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1),
                           torch.stack([x1, y1], -1), torch.stack([x0, y1], -1)], dim=1)  # (N, 4, 2)
    return crop_and_resize(frames.float(), corners.float(), (CROP, CROP))


def mouth_weight_map(boxes: torch.Tensor | None, shape: tuple[int, int, int, int], extra: float) -> torch.Tensor:
    """Per-pixel loss weights (B, T, H, W) of `shape` = (B, T, H, W): 1 + `extra` inside each
    frame's mouth box (`box_mask`), scaled to mean 1 per frame so the loss keeps its size and
    only its spread over the frame changes."""
    weight = 1 + extra * box_mask(boxes, shape).float()
    return weight / weight.mean(dim=(2, 3), keepdim=True)


class LipReader(nn.Module):
    """(N, 3, CROP, CROP) mouth crops in [-1, 1] -> features (N, F), speech (N, M), opening (N,).

    With `blur` > 0 the reader sees its crops through a fixed Gaussian low-pass of that sigma
    (crop pixels), in training and in the lip-reading loss alike, so the finest patterns carry
    nothing. Measured (sigma 1): stage 2 then drew coarser stripes instead, so the low-pass
    moves the texture a conv reader invites to lower frequencies; it does not remove it.

    With `centre` the reader reads each crop less its mean colour (per channel), so a tint of
    the whole crop reads as nothing and the lip-reading loss cannot ask for one: a reader of
    plain crops reads an open mouth partly from the crop turning redder, and the models trained
    with it tinted the whole frame with the speech (session 15: the per-frame red-minus-green
    offset of the frame from the ground truth correlated with the mouth opening at r 0.93).
    Measured on the demo recipe: the tint almost gone, fidelity 0.68 against 0.90, and the lip
    sync of the mouth itself (each frame's colour held: `lipsync_r_no_tint`) 0.62 against 0.39;
    the recipe uses it since session 16 (README, Status).
    """

    def __init__(self, n_mels: int, features: int = 64, blur: float = 0.0, kind: ReaderKind = "conv",
                 centre: bool = False) -> None:
        super().__init__()
        assert kind in ("conv", "linear"), f"lip reader kind must be 'conv' or 'linear', got {kind!r}"
        self.blur, self.centre = blur, centre
        if kind == "linear":  # features linear in the pixels: see the module docstring
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * CROP * CROP, features))
        else:
            self.net = nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
                nn.Flatten(), nn.Linear(64 * (CROP // 4) ** 2, features), nn.SiLU(),
            )
        self.speech = nn.Linear(features, n_mels)
        self.opening = nn.Linear(features, 1)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.centre:
            crops = crops - crops.mean(dim=(2, 3), keepdim=True)  # (N, 3, CROP, CROP) less each crop's colour
        if self.blur > 0:
            k = 2 * round(2 * self.blur) + 1  # kernel side: +- 2 sigma
            crops = gaussian_blur2d(crops, (k, k), (self.blur, self.blur), border_type="replicate")
        f = self.net(crops)
        return f, self.speech(f), self.opening(f)[:, 0]


def speech_target(audio: torch.Tensor) -> torch.Tensor:
    """The mel frame at each video frame's centre: (N, K, M) window -> (N, M)."""
    k = audio.shape[1]
    return audio[:, (k - 1) // 2 : k // 2 + 1].mean(dim=1)


def lip_reader_loss(reader: LipReader, crops, audio, opening=None) -> torch.Tensor:
    _, speech, open_pred = reader(crops)
    loss = F.mse_loss(speech, speech_target(audio))
    if opening is not None:
        loss = loss + F.mse_loss(open_pred, opening)
    return loss


def adversarial_crops(reader: LipReader, crops: torch.Tensor, audio: torch.Tensor, opening: torch.Tensor | None,
                      radius: float, steps: int = 3) -> torch.Tensor:
    """`crops` (N, 3, CROP, CROP) each moved by at most `radius` (L2, pixels in [-1, 1]) to where
    the reader reads them worst: projected gradient ascent on its loss (Madry et al., 2018). A
    reader trained on such crops is robust, and the input gradients of robust models follow the
    shapes the data has (Santurkar et al., 2019): what the lip-reading loss backpropagates into
    the frames. Returns detached crops."""
    delta = torch.zeros_like(crops, requires_grad=True)
    step_size = 2.5 * radius / steps
    for _ in range(steps):
        (grad,) = torch.autograd.grad(lip_reader_loss(reader, crops + delta, audio, opening), delta)
        norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None, None]  # (N, 1, 1, 1)
        delta = delta.detach() + step_size * grad / norm
        scale = (radius / delta.flatten(1).norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)  # (N,) onto the ball
        delta = (delta * scale[:, None, None, None]).requires_grad_(True)
    return (crops + delta).detach()


def lip_feature_loss(reader: LipReader, generated: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Distance of the frozen reader's features on generated vs real mouth crops, relative to
    the spread of the real features (so its scale does not depend on the reader's)."""
    with torch.no_grad():
        target = reader(real)[0]
    return F.mse_loss(reader(generated)[0], target) / target.var().clamp(min=1e-6)
