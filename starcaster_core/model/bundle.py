"""Everything one checkpoint holds: the denoiser and the identity encoder of one config."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .identity_encoder import IdentityEncoder
from .transformer import TORCH_OPS, STARCasterDenoiser


class STARCaster(nn.Module):
    def __init__(self, config: ModelConfig, operations=TORCH_OPS) -> None:
        super().__init__()
        self.config = config
        self.denoiser = STARCasterDenoiser(config, operations)
        self.identity_encoder = IdentityEncoder(config, operations)
