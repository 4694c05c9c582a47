"""The STARCaster denoiser: a spatio-temporal transformer over video [B, C, T, H, W].

Every frame is patchified into N tokens; attention runs over all tokens of all frames with a
block-causal rule in time (a frame sees its own chunk and earlier frames, never later ones).
Training passes a whole clip; the autoregressive sampler passes one chunk plus a `KVCache` of
the clean frames before it. Both go through this one forward.

The identity reaches the frames through the per-frame adaLN, the sink tokens and, when the
config asks for them, an identity "canvas" (one embedding per token position) and a linear
frame prior mu(identity, camera), fitted by least squares before training. With the prior the
network denoises the residual x0 - mu: it reads x_t - (1 - t) mu and mu is added back to its
estimate, so from pure noise it starts at the identity's linear mean frame instead of at the
data set's mean (which a few thousand steps never got past at t = 1).

The audio reaches them through the adaLN and, with `audio_canvas`, also through every token
(gated per position). With `previous_frame` each frame also reads the last frame before its
chunk as pixels (`previous_frame.py`); with `copy_previous` as well, that frame replaces mu as
what the network denoises the residual of, so an untrained network holds the picture still and
training spends itself on what changes (the mouth, the head, the view). Measured on the demo
world (README, Status, session 7): the still face came out 4 times closer than without it, but
the network stopped listening to the audio and the mouth lagged the speech, so it is off in
`demo`. With `reference_frame` every frame also reads the identity's portrait as pixels
(`reference_frame.py`).
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import torch
from einops import rearrange
from torch import nn

from ..conditioning import Conditioning
from ..config import ModelConfig
from .attention import attention_groups
from .block import Block, modulate
from .embeddings import rotary_angles, sinusoidal, spatial_table
from .kv_cache import KVCache
from .mouth_branch import MouthBranch
from .pixel_head import PixelHead, faded
from .previous_frame import previous_frames
from .reference_frame import reference_planes, turned_portrait

COPY_LEVEL = 0.1  # copy_previous: the highest noise level of a previous frame the estimate starts from
TORCH_OPS = SimpleNamespace(Linear=nn.Linear, LayerNorm=nn.LayerNorm, Conv1d=nn.Conv1d, Conv2d=nn.Conv2d,
                            GroupNorm=nn.GroupNorm)


def mlp(ops, d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(ops.Linear(d_in, d), nn.SiLU(), ops.Linear(d, d))


class STARCasterDenoiser(nn.Module):
    """Predicts the clean video x0 from a noisy one; see `ModelConfig` for the sizes.

    `operations` is a namespace of layer classes (Linear, LayerNorm, Conv2d, GroupNorm): plain
    torch by default; ComfyUI's loader passes `comfy.ops` so weights offload like its own models.
    """

    def __init__(self, config: ModelConfig, operations=TORCH_OPS) -> None:
        super().__init__()
        cfg, ops, d = config, operations, config.dim
        self.config = cfg
        # the noisy frame, then (optionally) the previous frame and its level, the portrait and its plane
        pixels_in = cfg.channels + (cfg.channels + 1) * (int(cfg.previous_frame) + int(cfg.reference_frame))
        self.patch_embed = ops.Linear(cfg.patch * cfg.patch * pixels_in, d)
        grid_h, grid_w = cfg.height // cfg.patch, cfg.width // cfg.patch
        self.register_buffer("spatial", spatial_table(grid_h, grid_w, d), persistent=False)  # (N, D)
        self.time_embed = mlp(ops, 256, d)
        self.audio_embed = mlp(ops, cfg.audio_window * cfg.audio_mels, d)
        self.camera_embed = mlp(ops, cfg.camera_dim, d)
        self.motion_embed = mlp(ops, 64, d)
        self.identity_embed = mlp(ops, cfg.identity_dim, d)
        self.identity_sink = ops.Linear(cfg.identity_dim, cfg.identity_tokens * d)
        self.audio_null = nn.Parameter(torch.zeros(d))
        self.identity_null = nn.Parameter(torch.zeros(d))
        self.sink_null = nn.Parameter(torch.zeros(cfg.identity_tokens, d))
        if cfg.identity_canvas:  # identity -> one embedding per token position of a frame
            self.canvas = ops.Linear(cfg.identity_dim, cfg.tokens_per_frame * d)
            self.canvas_null = nn.Parameter(torch.zeros(cfg.tokens_per_frame, d))
        if cfg.audio_canvas:  # where in the frame the audio goes: one gate per token position and channel
            self.audio_where = nn.Parameter(torch.zeros(cfg.tokens_per_frame, d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, ops) for _ in range(cfg.depth))
        self.final_norm = ops.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = ops.Linear(d, 2 * d)
        self.out = ops.Linear(d, cfg.patch * cfg.patch * cfg.channels)
        if cfg.frame_prior:  # (identity, camera) -> a whole frame, fitted by least squares, then frozen:
            # trained on, Adam's per-weight steps turned the smooth mean face into coloured blotches
            self.prior = ops.Linear(cfg.identity_dim + cfg.camera_dim, cfg.channels * cfg.height * cfg.width)
            self.prior.requires_grad_(False)
        # full-resolution inputs of the conv head, each a frame and a plane
        extra = (cfg.channels + 1) * (int(cfg.head_skip) + int(cfg.previous_frame) + int(cfg.reference_frame))
        self.head = PixelHead(d, cfg.patch, cfg.channels, cfg.head_channels, ops, extra) if cfg.head_channels else None
        self.mouth = None  # the conv branch that draws the mouth from the audio, at full resolution
        if cfg.mouth_branch:
            self.mouth = MouthBranch(d, cfg.channels, cfg.mouth_branch, cfg.height, cfg.width, ops, extra)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears; adaLN-Zero: every block's modulation and the output start at zero,
        so an untrained block is the identity and an untrained model predicts x0 = 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada.weight)
            nn.init.zeros_(blk.ada.bias)
        for m in (self.final_ada, self.out, getattr(self, "canvas", None), getattr(self, "prior", None)):
            if m is None:
                continue
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        for part in (self.head, self.mouth):
            if part is not None:
                part.zero_init()
        nn.init.normal_(self.sink_null, std=0.02)

    def compile_blocks(self) -> None:
        """torch.compile every transformer block in place (same weights, same state dict). The
        first chunks of a video compile, later chunks and videos reuse the code; the context
        length changes while the cache fills, so shapes are compiled as dynamic."""
        for blk in self.blocks:
            blk.compile(dynamic=True)

    def prior_inputs(self, cond: Conditioning) -> torch.Tensor:
        """(B, T, Di + 10): the identity (zeros when switched off) beside every frame's camera."""
        ident = cond.identity * cond.use_identity[:, None].to(cond.identity.dtype)  # (B, Di)
        return torch.cat([ident[:, None].expand(-1, cond.frames, -1), cond.camera], dim=-1)

    def frame_prior(self, cond: Conditioning) -> torch.Tensor:
        """The prior's frames (B, C, T, H, W)."""
        cfg = self.config
        flat = self.prior(self.prior_inputs(cond))  # (B, T, C * H * W)
        return rearrange(flat, "b t (c h w) -> b c t h w", c=cfg.channels, h=cfg.height)

    @torch.no_grad()
    def fit_prior(self, pairs) -> float:
        """Least-squares fit of the frame prior (a data-dependent initialisation: the network then
        learns only what is not linear in identity and camera). `pairs` yields (inputs (n, Di + 10)
        as `prior_inputs`, frames (n, C, H, W)); they are summed into the normal equations, so
        any number of frames fits in memory. Returns the fit's mean squared error."""
        xtx, xty, yty, rows = 0.0, 0.0, 0.0, 0
        for inputs, frames in pairs:
            x = torch.cat([inputs, torch.ones_like(inputs[:, :1])], dim=1).double()  # (n, Di + 11)
            y = frames.flatten(1).double()  # (n, C * H * W)
            xtx, xty, yty, rows = xtx + x.T @ x, xty + x.T @ y, yty + y.pow(2).sum(), rows + len(x)
        ridge = 1e-4 * torch.eye(xtx.shape[0], dtype=xtx.dtype) * xtx.diagonal().mean()
        w = torch.linalg.solve(xtx + ridge, xty)  # (Di + 11, C * H * W)
        self.prior.weight.copy_(w[:-1].T)
        self.prior.bias.copy_(w[-1])
        sse = yty - 2 * (w * xty).sum() + (w * (xtx @ w)).sum()  # ||x w - y||^2 from the sums
        return float(sse / (rows * w.shape[1]))

    def compute_dtype(self) -> torch.dtype:
        """The dtype the forward computes in: the weights', or fp32 for a storage-only dtype (fp8)."""
        dtype = self.patch_embed.weight.dtype
        return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float32

    def with_reference_views(self, cond: Conditioning, device: torch.device) -> Conditioning:
        """`cond` with its portrait turned to every frame's camera (`Conditioning.reference_views`)
        for a model that warps its portrait (else `cond` as is): a caller that runs several passes
        over the same frames (the sampler: every Euler step and the cache pass of a chunk) warps
        once. The same result as warping in every pass: the portrait and cameras are cast as the
        forward casts them."""
        if not self.config.reference_warp or cond.reference is None:
            return cond
        views = turned_portrait(cond.to(device, self.compute_dtype()), device, self.config.reference_mask_mouth)
        return replace(cond, reference_views=views)

    def new_cache(self, window: int | None) -> KVCache:
        return KVCache(self.config.depth, self.config.tokens_per_frame, window)

    def audio_embedding(self, cond: Conditioning) -> torch.Tensor:
        """Per-frame audio embedding (B, T, D): scaled by the lip-sync strength away from the
        learned "no audio" embedding, which replaces it where the audio is off."""
        audio = self.audio_embed(rearrange(cond.audio, "b t k m -> b t (k m)"))  # (B, T, D)
        strength = cond.audio_strength[:, None, None]
        audio = self.audio_null + strength * (audio - self.audio_null)
        return torch.where(cond.use_audio[:, None, None], audio, self.audio_null.expand_as(audio))

    def frame_conditioning(self, t: torch.Tensor, cond: Conditioning, audio: torch.Tensor) -> torch.Tensor:
        """Per-frame conditioning vector: (B, T, D). All signals are joined here, by addition."""
        ident = self.identity_embed(cond.identity)  # (B, D)
        ident = torch.where(cond.use_identity[:, None], ident, self.identity_null.expand_as(ident))
        return (
            self.time_embed(sinusoidal(t * 1000.0, 256).to(t.dtype))  # (B, T, D)
            + audio
            + self.camera_embed(cond.camera)
            + self.motion_embed(sinusoidal(cond.motion * 100.0, 64).to(t.dtype))
            + ident[:, None, :]
        )

    def sink_tokens(self, cond: Conditioning) -> torch.Tensor:
        """Identity sink tokens: (B, S, D)."""
        b, s = cond.batch, self.config.identity_tokens
        sink = self.identity_sink(cond.identity).view(b, s, -1)  # (B, S * D) -> (B, S, D)
        return torch.where(cond.use_identity[:, None, None], sink, self.sink_null.expand_as(sink))

    def canvas_tokens(self, cond: Conditioning) -> torch.Tensor:
        """The identity's embedding of every token position of a frame: (B, 1, N, D)."""
        b, n = cond.batch, self.config.tokens_per_frame
        canvas = self.canvas(cond.identity).view(b, n, -1)  # (B, N * D) -> (B, N, D)
        canvas = torch.where(cond.use_identity[:, None, None], canvas, self.canvas_null.expand_as(canvas))
        return canvas[:, None]

    def forward(
        self,
        x: torch.Tensor,  # (B, C, T, H, W) noisy video x_t
        t: torch.Tensor,  # (B, T) noise level of every frame, 1 = pure noise, 0 = clean
        cond: Conditioning,  # conditioning of these T frames
        *,
        frame_offset: int = 0,  # global index of x's first frame (rotary time, chunking)
        cache: KVCache | None = None,  # clean context before frame_offset; read-only here...
        write_cache: bool = False,  # ...unless this pass should append these frames to it
        block: int | None = None,  # chunk length of the block-causal rule (default config.chunk)
        window: int | None = None,  # rolling window in frames (None: the whole past)
        estimate: bool = True,  # False: only write the cache (the last block stops at its keys/values)
    ) -> torch.Tensor | None:
        """Returns the model's estimate of the clean video x0: (B, C, T, H, W), float32, or
        None for a pass that only writes the cache (`estimate=False`: the sampler's pass over a
        finished chunk, whose estimate nobody reads, skips the last block's attention and MLP
        and the head)."""
        assert estimate or write_cache, "a pass without an estimate must write the cache"
        cfg = self.config
        b, c, n_frames, h, w = x.shape
        assert (c, h, w) == (cfg.channels, cfg.height, cfg.width), (
            f"model expects [B, {cfg.channels}, T, {cfg.height}, {cfg.width}], got {tuple(x.shape)}"
        )
        assert t.shape == (b, n_frames), f"t must be (B, T) = {(b, n_frames)}, got {tuple(t.shape)}"
        dtype, dev = self.compute_dtype(), x.device
        cond = cond.to(dev, dtype)
        per_frame, p = cfg.tokens_per_frame, cfg.patch

        # 1. tokens of every frame, with the fixed spatial table
        block = block or cfg.chunk
        if cfg.previous_frame:  # before x's first chunk: the cache's last frame (none without a cache)
            previous = cache.frame_before(frame_offset // block * block) if cache is not None else None
            # the frame before each frame's chunk (B, C, T, H, W) and its noise level (B, T)
            prev, prev_level = previous_frames(x.float(), t.float(), frame_offset, block, previous)
            before = faded(prev, prev_level)  # (B, C + 1, T, H, W)
        anchor = None  # what the network's estimate is a residual of: (B, C, T, H, W) or none
        if cfg.frame_prior:
            anchor = self.frame_prior(cond).float()  # mu
        if cfg.copy_previous:  # the previous frame where it is (almost) clean, elsewhere mu or nothing
            ready = (prev_level <= COPY_LEVEL)[:, None, :, None, None]  # a noisy frame would hand on its noise
            anchor = torch.where(ready, prev, anchor if anchor is not None else torch.zeros_like(prev))
        x_t = x.float()
        if anchor is not None:  # denoise the residual y = x0 - anchor: y_t = x_t - (1 - t) anchor
            x_t = x_t - (1 - t.float()[:, None, :, None, None]) * anchor
        pixels, full_res = x_t, []  # what the patches and the conv head read, at full resolution
        if cfg.head_skip:  # x_t * (1 - t) and a plane of t: nothing at t = 1, the frame towards t = 0
            full_res.append(faded(x_t, t.float()))  # (B, C + 1, T, H, W)
        if cfg.previous_frame:
            pixels = torch.cat([x_t, before], dim=1)  # (B, 2C + 1, T, H, W)
            full_res.append(before)
        if cfg.reference_frame:  # the identity's portrait beside every frame, and whether it is there
            portrait = reference_planes(cond, x, cfg.reference_warp, cfg.reference_mask_mouth)  # (B, C + 1, T, H, W)
            pixels = torch.cat([pixels, portrait], dim=1)
            full_res.append(portrait)
        tokens = rearrange(pixels.to(dtype), "b c t (h p1) (w p2) -> b t (h w) (p1 p2 c)", p1=p, p2=p)
        tokens = self.patch_embed(tokens) + self.spatial.to(dtype)  # (B, T, N, D)
        if cfg.identity_canvas:
            tokens = tokens + self.canvas_tokens(cond)  # + (B, 1, N, D)
        audio = self.audio_embedding(cond)  # (B, T, D)
        if cfg.audio_canvas:  # the mouth's tokens hear the audio directly, not only through the adaLN
            where = self.audio_where.to(tokens.dtype)  # (N, D)
            tokens = tokens + audio[:, :, None, :].to(tokens.dtype) * where  # + (B, T, 1, D) * (N, D)
        tokens = rearrange(tokens, "b t n d -> b (t n) d")  # (B, L, D), L = T * N

        # 2. per-frame conditioning (B, T, D) and the identity sink (B, S, D)
        frame_cond = self.frame_conditioning(t.to(dtype), cond, audio)
        if cfg.silu_conditioning:  # the adaLN input, as in DiT: modulation depends on the signals jointly
            frame_cond = torch.nn.functional.silu(frame_cond)
        sink = self.sink_tokens(cond)

        # 3. block-causal key ranges and rotary angles from global frame indices (and patch cells)
        frames = torch.arange(frame_offset, frame_offset + n_frames, device=dev)
        q_frames = frames.repeat_interleave(per_frame)  # (L,)
        past_frames = cache.token_frames(dev) if cache is not None else q_frames[:0]
        k_frames = torch.cat([past_frames, q_frames])  # (Lc + L,) frame of every non-sink key
        groups = attention_groups(q_frames, k_frames, block, window)
        cells = None
        if cfg.spatial_rope:  # (row, column) of every token in its frame's patch grid, each (L,)
            grid = torch.arange(per_frame, device=dev).repeat(n_frames)  # (L,) index within the frame
            cells = (torch.div(grid, w // p, rounding_mode="floor"), grid % (w // p))
        rope = rotary_angles(q_frames, cfg.dim // cfg.heads, cells)

        # 4. the blocks; a cache-writing pass stages every block's new keys/values
        for i, blk in enumerate(self.blocks):
            past = cache.layer(i) if cache is not None else None
            if not estimate and i == len(self.blocks) - 1:
                cache.append(i, *blk.keys_values(tokens, frame_cond, rope))
                break
            tokens, kv = blk(tokens, frame_cond, rope, blk.sink_kv(sink), past, groups)
            if write_cache:
                cache.append(i, *kv)
        if write_cache:
            last = (x[:, :, -1:].float().clone(), t[:, -1:].float()) if cfg.previous_frame else None
            cache.commit(frames, last)  # a previous-frame model reads the last frame for the next chunk
        if not estimate:
            return None

        # 5. per-frame final modulation, un-patchify and (optionally) the full-resolution head
        shift, scale = self.final_ada(frame_cond)[:, :, None].chunk(2, dim=-1)  # 2 x (B, T, 1, D)
        tokens = modulate(self.final_norm(tokens), shift, scale)  # (B, L, D)
        out = rearrange(  # (B, L, p * p * C) -> (B, C, T, H, W)
            self.out(tokens), "b (t h w) (p1 p2 c) -> b c t (h p1) (w p2)", t=n_frames, h=h // p, w=w // p, p1=p, p2=p
        )
        extra = torch.cat(full_res, dim=1).to(out.dtype) if full_res else None  # (B, E, T, H, W)
        if self.head is not None:
            out = self.head(tokens, out, extra)
        out = out.float()
        if anchor is not None:
            out = out + anchor
        if cfg.prediction == "v":  # x_t = (1 - t) x0 + t e and v = e - x0  =>  x0 = x_t - t v
            out = x.float() - t.float()[:, None, :, None, None] * out
        if self.mouth is not None:  # the mouth's correction, in the frames' own space (no anchor, no v)
            out = self.mouth(out, x.float(), t.float(), audio, extra)
        return out
