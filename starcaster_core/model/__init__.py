"""The STARCaster denoiser, its blocks, the KV cache and the identity encoder."""

from .bundle import STARCaster
from .identity_encoder import IdentityEncoder
from .kv_cache import KVCache
from .transformer import TORCH_OPS, STARCasterDenoiser

__all__ = ["TORCH_OPS", "IdentityEncoder", "KVCache", "STARCaster", "STARCasterDenoiser"]
