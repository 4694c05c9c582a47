"""A full-resolution branch that draws the mouth from the speech, frame by frame.

The transformer reads 8x8 patches and hears the audio only through its per-frame adaLN; the
demo model of sessions 16 and 17 copied its portrait's closed mouth and drew the speech as faint
stripes over the whole frame (README, Status, sessions 17 to 19). A probe on the demo world (a
fresh model's estimate from pure noise, scored on the mouth box's change over time against the
ground truth's) found a plain conv net on portrait + audio learning the mouth fast: 0.30 and
0.41 after 100 and 200 steps, near the 0.49 a linear map from the true opening reaches.

This branch is such a conv net beside the transformer: per frame, over a window around the
default mouth box (`mouth_box.DEFAULT_BOX` grown by MARGIN), it reads the transformer's estimate,
the noisy frame faded by its level (`pixel_head.faded`), the model's full-resolution inputs (the
portrait turned to the frame's camera and its plane) and a few planes of the frame's audio
embedding (the embedding the adaLN gets, so lip-sync strength, the "no audio" embedding and audio
guidance act here too), and adds a correction to the estimate there, faded out over the margin
so the window leaves no seam. Convolutions are per frame, so the block-causal rule and the KV
cache are untouched. Its last convolution starts at zero: an untrained branch adds nothing.

It is trained on its own, after the stages, with the rest of the model frozen
(`train/mouth_stage.py`): trained with the transformer, in either of session 19's forms (its
window replacing the estimate, or added to it without reading it), the recipe's loss over whole
frames at every noise level left the window showing the turned portrait or a faint mouth, and
worse frames (README, Status, session 19). At 64x64 the window is 28 x 40 pixels.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..mouth_box import default_box_pixels
from .pixel_head import faded

MARGIN = 4  # pixels (or latent cells) around the default mouth box, ramped down to the edge
AUDIO_PLANES = 16  # audio embedding -> this many constant planes per frame


def mouth_window(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the window: the default mouth box grown by MARGIN, inside the frame."""
    rows, cols = default_box_pixels(height, width)
    return (slice(max(0, rows.start - MARGIN), min(height, rows.stop + MARGIN)),
            slice(max(0, cols.start - MARGIN), min(width, cols.stop + MARGIN)))


def feather(rows: int, cols: int) -> torch.Tensor:
    """(rows, cols) weights: 1 inside, falling linearly to 1 / (MARGIN + 1) on the outermost pixels."""
    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        return ((torch.minimum(i, n - 1 - i) + 1) / (MARGIN + 1)).clamp(max=1.0)
    return ramp(rows)[:, None] * ramp(cols)[None, :]


class MouthBranch(nn.Module):
    def __init__(self, dim: int, channels: int, width: int, height: int, frame_width: int, ops, extra: int = 0,
                 ) -> None:
        """extra: channels of the full-resolution inputs it reads beside the noisy frame."""
        super().__init__()
        self.rows, self.cols = mouth_window(height, frame_width)
        n_rows, n_cols = self.rows.stop - self.rows.start, self.cols.stop - self.cols.start
        self.register_buffer("ramp", feather(n_rows, n_cols), persistent=False)  # (h, w)
        self.audio = ops.Linear(dim, AUDIO_PLANES)
        inputs = channels + (channels + 1) + extra + AUDIO_PLANES  # the estimate, faded x_t, extra, audio
        self.conv = nn.ModuleList([
            ops.Conv2d(inputs, width, 3, padding=1),
            ops.Conv2d(width, width, 3, padding=1),
            ops.Conv2d(width, width, 3, padding=2, dilation=2),
            ops.Conv2d(width, channels, 3, padding=1),
        ])
        self.act = nn.SiLU()

    def zero_init(self) -> None:
        nn.init.zeros_(self.conv[-1].weight)
        nn.init.zeros_(self.conv[-1].bias)

    def forward(self, estimate: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """estimate (B, C, T, H, W) the model's x0 so far; x_t (B, C, T, H, W) its noisy input at
        levels t (B, T); audio (B, T, D) the per-frame audio embedding; extra (B, E, T, H, W) the
        full-resolution inputs (among them the turned portrait and its plane). Returns the
        estimate with the branch's correction added in the window: (B, C, T, H, W)."""
        b = estimate.shape[0]
        r, k = self.rows, self.cols
        dtype = audio.dtype  # the model's compute dtype
        planes = [estimate[..., r, k], faded(x_t[..., r, k], t)]  # (B, C, T, h, w), (B, C + 1, T, h, w)
        if extra is not None:
            planes.append(extra[..., r, k])
        window = torch.cat([p.to(dtype) for p in planes], dim=1)  # (B, E', T, h, w)
        sound = self.audio(audio)  # (B, T, P)
        sound = rearrange(sound, "b t p -> b p t () ()").expand(-1, -1, -1, *window.shape[-2:])  # (B, P, T, h, w)
        y = rearrange(torch.cat([window, sound], dim=1), "b e t h w -> (b t) e h w")
        for conv in self.conv[:-1]:
            y = self.act(conv(y))
        y = rearrange(self.conv[-1](y), "(b t) c h w -> b c t h w", b=b)  # (B, C, T, h, w)
        out = estimate.clone()
        out[..., r, k] = estimate[..., r, k] + (self.ramp.to(y.dtype) * y).to(out.dtype)
        return out
