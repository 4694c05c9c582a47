"""Everything one checkpoint holds: the denoiser, the identity encoder, the identity prior and
the head-pose prior."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..config import ModelConfig
from .identity_encoder import IdentityEncoder
from .pose_prior import PosePrior
from .transformer import TORCH_OPS, STARCasterDenoiser


class STARCaster(nn.Module):
    def __init__(self, config: ModelConfig, operations=TORCH_OPS) -> None:
        super().__init__()
        self.config = config
        self.denoiser = STARCasterDenoiser(config, operations)
        self.identity_encoder = IdentityEncoder(config, operations)
        # Per-dimension mean/std of the training identities: random identities are drawn from
        # this diagonal Gaussian, so they look like people the model has seen.
        self.register_buffer("identity_mean", torch.zeros(config.identity_dim))
        self.register_buffer("identity_std", torch.ones(config.identity_dim))
        # Built last, so a config with it inits the denoiser and encoder as one without it does.
        self.pose_prior = PosePrior(config, operations) if config.pose_prior else None

    def drop_pose_prior(self) -> None:
        """Remove the head-pose prior (and say so in the config): an untrained one would turn
        the camera at random."""
        self.pose_prior = None
        self.config = self.denoiser.config = replace(self.config, pose_prior=0)
