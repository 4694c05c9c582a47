"""Head pose from speech: a small flow-matching model over pose tracks (the KDTalker idea).

Why: head motion in talking footage is stochastic and only loosely tied to the speech, so a
few-step sampler regresses it to its mean and the head stands still (the embedded model: pose
diversity 0.02 deg on held-out clips, below a reference-locked head's 0.18; README, Status).
A denoiser that follows its camera input draws whatever head-relative view it is asked for
(the embedded model does not yet: README, Status, session 11). This prior draws the pose: a
track of (yaw, pitch, roll) per video frame, sampled from the speech features, which
`generate` composes with the requested camera (`camera.head_relative`), so the frames show a
head that turns and nods while the camera does what the user asked.

The network is a stack of dilated 1D convolutions over time (receptive field about 2 s at
25 fps) that reads a noisy pose track, the audio features of every frame, the frames already
known (the last `context` frames of the previous window, and a plane saying which) and the
noise level, and predicts the clean track (x0; loss on the velocity, as the denoiser). Any
length is drawn window after window, each window continuing the last one's final frames.
Trained after the denoiser's stages on the data's own head poses (`train/pose.py`); data without
pose labels trains no prior, and a model without one draws the head as before.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..flow import add_noise, euler_step, target_mean, timesteps, velocity_loss
from .embeddings import sinusoidal

POSE_SCALE = 10.0  # degrees per unit: tracks are learned in units of 10 degrees
DILATIONS = (1, 2, 4, 8, 1, 2, 4, 8)  # kernel 5: receptive field 1 + 4 * 2 * 15 = 121 frames
WINDOW, CONTEXT, STEPS = 32, 8, 8  # frames per window, known frames it continues, Euler steps


class PosePrior(nn.Module):
    def __init__(self, config: ModelConfig, operations) -> None:
        super().__init__()
        w, ops = config.pose_prior, operations
        self.audio_in = ops.Linear(config.audio_window * config.audio_mels, w)
        self.pose_in = ops.Conv1d(3 + 3 + 1, w, 1)  # noisy pose, known pose, known plane
        self.time_in = nn.Sequential(ops.Linear(64, w), nn.SiLU(), ops.Linear(w, w))
        self.norms = nn.ModuleList(ops.GroupNorm(1, w) for _ in DILATIONS)
        self.convs = nn.ModuleList(ops.Conv1d(w, w, 5, padding=2 * d, dilation=d) for d in DILATIONS)
        self.out = ops.Conv1d(w, 3, 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, known: torch.Tensor,
                known_on: torch.Tensor) -> torch.Tensor:
        """x_t, known: (B, 3, T) pose in POSE_SCALE units; t: (B,); audio: (B, T, K, M);
        known_on: (B, 1, T) 1 where `known` holds a frame -> x0 estimate (B, 3, T)."""
        a = self.audio_in(rearrange(audio, "b t k m -> b t (k m)"))  # (B, T, W)
        h = self.pose_in(torch.cat([x_t, known * known_on, known_on], dim=1))  # (B, W, T)
        h = h + rearrange(a, "b t w -> b w t") + self.time_in(sinusoidal(t * 1000.0, 64).to(h.dtype))[:, :, None]
        for norm, conv in zip(self.norms, self.convs, strict=True):
            h = h + conv(F.silu(norm(h)))
        return self.out(F.silu(h))  # (B, 3, T)

    def loss(self, pose: torch.Tensor, audio: torch.Tensor, generator: torch.Generator,
             context: int = CONTEXT) -> torch.Tensor:
        """Flow-matching loss of (B, T, 3) degree tracks and their (B, T, K, M) audio features;
        half the tracks continue their first `context` frames (known), as windows after the first do."""
        b, n, _ = pose.shape
        context = min(context, n // 2)  # short tracks still leave frames to draw
        x0 = rearrange(pose, "b t c -> b c t") / POSE_SCALE  # (B, 3, T)
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        t = torch.rand(b, generator=generator).to(x0)  # (B,) one noise level per track
        x_t = add_noise(x0[..., None, None], noise[..., None, None], t[:, None].expand(b, n))[..., 0, 0]
        known_on = torch.zeros(b, 1, n, dtype=x0.dtype, device=x0.device)
        continues = torch.rand(b, generator=generator) < 0.5  # (B,)
        known_on[continues.to(x0.device), :, :context] = 1.0
        x_t = torch.where(known_on.bool(), x0, x_t)  # known frames are given clean
        pred = self(x_t, t, audio, x0, known_on)
        err = velocity_loss(pred[..., None, None], x0[..., None, None], t[:, None].expand(b, n))  # (B, T)
        return target_mean(err, 1.0 - known_on[:, 0])  # only the frames the model had to draw

    @torch.no_grad()
    def sample(self, audio: torch.Tensor, generator: torch.Generator, device: torch.device | str = "cpu",
               steps: int = STEPS) -> torch.Tensor:
        """(T, K, M) audio features -> (T, 3) head pose (yaw, pitch, roll) in degrees, float32 on
        the CPU. Windows of WINDOW frames, each continuing the last CONTEXT frames drawn; the last
        window starts early enough to be WINDOW frames long too, continuing more frames: a shorter
        one, a length the prior never trained on, jumped where it began (the test's prior, 6 seeds:
        a yaw step of 2.9-4.7 degrees there, the track's largest in 5 of them; 1.1-2.9 now)."""
        dtype = self.out.weight.dtype
        n = audio.shape[0]
        feats = audio[None].to(device, dtype)  # (1, T, K, M)
        pose = torch.zeros(1, 3, n, device=device, dtype=dtype)
        schedule = timesteps(steps)
        done = 0
        while done < n:
            begin = max(0, min(done - CONTEXT, n - WINDOW))  # the last window, too, is WINDOW frames long
            end = min(begin + WINDOW, n)
            known_on = torch.zeros(1, 1, end - begin, device=device, dtype=dtype)
            known_on[..., : done - begin] = 1.0
            known, given = pose[..., begin:end], known_on.bool()
            x = torch.randn(1, 3, end - begin, generator=generator).to(device, dtype)
            for i in range(steps):
                t, t_next = float(schedule[i]), float(schedule[i + 1])
                x = torch.where(given, known, x)  # known frames are given clean, as in training
                x0 = self(x, torch.full((1,), t, device=device, dtype=dtype), feats[:, begin:end], known, known_on)
                x = euler_step(x, x0, t, t_next) if t_next > 0 else x0
            pose[..., done:end] = x[..., done - begin:]
            done = end
        return rearrange(pose[0].float().cpu(), "c t -> t c") * POSE_SCALE  # (T, 3)
