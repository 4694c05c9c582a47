"""The training objective of one batch: flow matching with diffusion forcing, soft identity,
self-forcing context, optional sampler forcing and the lip-reading loss."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from einops import rearrange
from kornia.geometry.transform import get_affine_matrix2d, warp_affine
from kornia.losses import total_variation

from ..camera import pose_features
from ..conditioning import Conditioning
from ..flow import add_noise, target_mean, timesteps, velocity_loss
from ..model import STARCaster
from ..sampler import sample_video
from .config import Stage, TrainConfig
from .lip_reader import LipReader, lip_feature_loss, mouth_crops, mouth_weight_map


def chunk_times(batch: int, n_chunks: int, chunk: int, clean_share: float, g: torch.Generator,
                grid_share: float = 0.5, context_noise: float = 0.0):
    """Per-frame noise levels (B, T): one level per chunk (diffusion forcing), uniform in [0, 1]
    or, for a `grid_share` of chunks, one of the 4-step grid's levels (1, 0.75, 0.5, 0.25): from
    t = 1 only the conditioning tells the model what to draw, so that level must be well trained.
    In a `clean_share` of clips the chunks before a random one are context, as at inference:
    almost clean (t < 0.03), or with a model's `context_noise` c > 0, at levels uniform in
    [0, 2c] around the c the sampler keeps its context at. Also returns which frames are such
    context (B, T): inputs, not targets."""
    grid = timesteps(4)[:-1]  # (4,) noise levels of 4 uniform Euler steps
    on_grid = grid[torch.randint(len(grid), (batch, n_chunks), generator=g)]
    t = torch.where(torch.rand(batch, n_chunks, generator=g) < grid_share, on_grid,
                    torch.rand(batch, n_chunks, generator=g))  # (B, n)
    clean = torch.rand(batch, generator=g) < clean_share
    first = torch.randint(1, max(2, n_chunks), (batch,), generator=g)
    early = torch.arange(n_chunks)[None, :] < first[:, None]  # (B, n)
    ctx_levels = torch.rand(batch, n_chunks, generator=g) * (2 * context_noise if context_noise > 0 else 0.03)
    t = torch.where(clean[:, None] & early, ctx_levels, t)
    return t.repeat_interleave(chunk, dim=1), (clean[:, None] & early).repeat_interleave(chunk, dim=1)


@contextmanager
def pass_without_grad(device_type: str):
    """torch.no_grad() for a pass of the model inside a training step's autocast region, with
    autocast's weight cache off. Autocast keeps the low-precision copy of each weight it casts
    until the region ends; a copy cast in a no-grad pass carries no graph, and the step's loss
    pass reuses it, so no gradient reaches that weight. Found in session 21: with the no-grad
    self-forcing rollout before the loss pass, every linear and conv weight of the denoiser got no
    gradient in that step (bf16 autocast: most steps of stages 2 and 3 of every model before)."""
    dtype = torch.get_autocast_dtype(device_type)
    with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=torch.is_autocast_enabled(device_type),
                                         cache_enabled=False):
        yield


def rollout(model: STARCaster, cond: Conditioning, n_frames: int, steps: int, g: torch.Generator,
            window: int | None = None) -> torch.Tensor:
    """The model's own video of the first `n_frames` frames (B, C, n_frames, H, W), made by the
    AR sampler itself (`steps` Euler steps per chunk, the context of `window` frames (None: all)
    kept in its KV cache, as at inference; recomputing it each step is the same video, slower)."""
    with pass_without_grad(cond.audio.device.type):
        return sample_video(model.denoiser, cond.frame_slice(0, n_frames), timesteps(steps), generator=g,
                            chunk=model.config.chunk, context=window)


def sampler_forced(model: STARCaster, x_t: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, own: torch.Tensor,
                   cond: Conditioning, window: int | None = None) -> torch.Tensor:
    """x_t (B, C, T, H, W) with the frames `own` (B, T) re-noised from the model's own estimate made from
    pure noise: x_t = t e + (1 - t) x0_hat, where x0_hat is the model's estimate for those frames at
    t = 1 from the same noise e (the other frames as they are). That is the input the sampler's next
    Euler step gets (from t = 1 to t), where the true frames stand in training: a model trained only
    on those learns to trust the mouth it finds in x_t, and at inference finds its own faint one."""
    clips = own.any(dim=1).nonzero()[:, 0]  # (n,) the clips with such frames: the model runs on these alone
    mask = own[clips][:, None, :, None, None]  # (n, 1, T, 1, 1)
    pure = torch.where(mask, noise[clips], x_t[clips])  # (n, C, T, H, W): own frames at t = 1
    with pass_without_grad(x_t.device.type):
        first = model.denoiser(pure, torch.where(own[clips], 1.0, t[clips]), cond.select(clips),
                               block=model.config.chunk, window=window)
    out = x_t.clone()
    out[clips] = torch.where(mask, add_noise(first.to(x_t.dtype), noise[clips], t[clips]), x_t[clips])
    return out


def identity_condition(model: STARCaster, batch: dict, tc: TrainConfig, g: torch.Generator):
    """(identity used for conditioning (B, Di), encoder loss). With ground-truth identity vectors
    the encoder learns to regress them and the denoiser sees them with noise (a soft
    constraint); without, the denoiser conditions on the encoder's output, trained end to end."""
    if "identity" in batch:
        target = batch["identity"]
        std = model.identity_std.to(target)
        noisy = target + tc.identity_noise * std * torch.randn(target.shape, generator=g).to(target)
        enc_loss = torch.zeros((), device=target.device)
        if "reference" in batch:
            enc_loss = ((model.identity_encoder(batch["reference"]) - target) / std).pow(2).mean()
        return noisy, enc_loss
    return model.identity_encoder(batch["reference"]), torch.zeros((), device=batch["frames"].device)


def reference_condition(model: STARCaster, batch: dict, tc: TrainConfig, g: torch.Generator) -> dict:
    """The portrait of a `reference_frame` model: the clip's `portrait` ((B, C, H, W): the
    sequence's own portrait or another moment of the clip, see `ClipSampler`), dropped for a
    `reference_dropout` share of clips."""
    if not model.config.reference_frame or "portrait" not in batch:
        return {}
    ref = batch["portrait"]
    if tc.reference_jitter > 0:
        ref = jitter(ref, tc.reference_jitter, g)
    keep = torch.rand(ref.shape[0], generator=g) >= tc.reference_dropout  # (B,)
    out = {"reference": ref, "use_reference": keep.to(ref.device)}
    if "portrait_camera" in batch:
        out["reference_camera"] = pose_features(batch["portrait_camera"]).to(ref.device)
    return out


def jitter(images: torch.Tensor, amount: float, g: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) images each shifted by up to `amount` of the frame, turned by up to
    100 * `amount` degrees and zoomed by up to 1 +- `amount` (edges repeated): a portrait that
    says who is in the frame, not where their head is."""
    b, _, h, w = images.shape
    u = torch.rand(b, 4, generator=g) * 2 - 1  # (B, 4) in [-1, 1]
    size = torch.tensor([w, h], dtype=torch.float32)
    mat = get_affine_matrix2d(
        translations=u[:, :2] * amount * size, center=(size / 2).expand(b, 2),
        scale=(1 + amount * u[:, 3:]).expand(b, 2), angle=u[:, 2] * amount * 100,
    )[:, :2]  # (B, 2, 3)
    return warp_affine(images, mat.to(images), (h, w), padding_mode="border")


def edge_loss(x0_pred: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Gradient-difference loss (Mathieu et al., 2016) of every frame (B, T): the mean absolute
    difference of the estimate's and the frame's differences between neighbouring pixels, i.e.
    the total variation of the error. A pattern the frame does not have and an edge the estimate
    blurs both cost here far more than in the squared pixel loss, where a fine pattern of small
    amplitude costs almost nothing."""
    return total_variation(x0_pred.float() - x0.float(), reduction="mean").mean(dim=1)  # (B, C, T) -> (B, T)


def motion_level(batch: dict) -> torch.Tensor:
    """Motion intensity of each clip (B, T): head-pose spread relative to the data's typical one."""
    frames = batch["frames"]
    if "pose" not in batch:
        return torch.ones(frames.shape[:2], device=frames.device)
    spread = batch["pose"].std(dim=1).mean(dim=1)  # (B,)
    return (spread / batch.get("pose_ref", 3.0)).clamp(0, 2)[:, None].expand(frames.shape[:2])


def mouth_boxes(batch: dict, tc: TrainConfig, where: torch.Tensor | None = None) -> torch.Tensor | None:
    """The data's per-frame mouth boxes (B, T, 4), or those of the `where` (B, T) frames (n, 4);
    None (every frame at `mouth_box.DEFAULT_BOX`) when the data has none or `tc.mouth_boxes` is 0."""
    if not tc.mouth_boxes or "mouth_box" not in batch:
        return None
    return batch["mouth_box"] if where is None else batch["mouth_box"][where]


def batch_loss(
    model: STARCaster, batch: dict, tc: TrainConfig, stage: Stage, g: torch.Generator,
    lip_reader: LipReader | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    cfg = model.config
    frames = batch["frames"]  # (B, T, C, H, W) in [-1, 1]
    b, n_frames = frames.shape[:2]
    assert n_frames % cfg.chunk == 0, f"clip length {n_frames} must be a multiple of the chunk {cfg.chunk}"
    dev = frames.device
    x0 = rearrange(frames, "b t c h w -> b c t h w")
    window = cfg.context_frames if tc.train_window else None  # frames each chunk attends back to

    # 1. conditioning, with the soft identity and dropout for classifier-free guidance
    identity, enc_loss = identity_condition(model, batch, tc, g)
    audio_drop = tc.audio_dropout_motion if stage == "motion" else tc.audio_dropout
    talking = batch["talking"].to(dev)
    cond = Conditioning(
        identity=identity, audio=batch["audio"], camera=pose_features(batch["camera"]),
        motion=motion_level(batch), audio_strength=torch.ones(b, device=dev),
        use_audio=(torch.rand(b, generator=g) >= audio_drop).to(dev) & talking,
        use_identity=(torch.rand(b, generator=g) >= tc.identity_dropout).to(dev),
        **reference_condition(model, batch, tc, g),
    )

    # 2. noise levels per chunk and the noisy clip
    t, context = chunk_times(b, n_frames // cfg.chunk, cfg.chunk, tc.clean_context, g, tc.t_grid, cfg.context_noise)
    t = t.to(dev)
    noise = torch.randn(x0.shape, generator=g).to(dev)
    x_t = add_noise(x0, noise, t)
    weight = (~context).float().to(dev)  # clean context is input, not a target

    # 3. self-forcing: the context chunks are the model's own autoregressive generation
    if stage != "motion" and tc.self_forcing > 0:
        own = torch.rand(b, generator=g) < tc.self_forcing  # (B,)
        first = torch.randint(1, max(2, n_frames // cfg.chunk), (b,), generator=g) * cfg.chunk
        if bool(own.any()):
            idx = own.nonzero()[:, 0]
            generated = rollout(model, cond.select(idx.to(dev)), int(first[idx].max()), tc.rollout_steps, g, window)
            ctx = own[:, None] & (torch.arange(n_frames)[None, :] < first[:, None])  # (B, T) context frames
            ctx = ctx.to(dev)
            own_ctx = torch.zeros_like(x_t)
            own_ctx[idx.to(dev), :, : generated.shape[2]] = generated.to(x_t.dtype)
            level = torch.zeros_like(t)  # (B, T) noise levels of the own context
            if cfg.context_noise > 0:  # levels 0..2c around the c the sampler keeps its context at
                level = torch.rand(t.shape, generator=g).to(dev) * 2 * cfg.context_noise
                own_ctx = add_noise(own_ctx, noise, level)
            x_t = torch.where(ctx[:, None, :, None, None], own_ctx, x_t)
            t = torch.where(ctx, level, t)
            weight = weight * (~ctx).float()  # the context is input here, not a target

    # 3b. sampler forcing: a share of clips whose targets are noised from the model's own first estimate
    if tc.sampler_forcing > 0:
        own = (torch.rand(b, generator=g) < tc.sampler_forcing).to(dev)[:, None] & (weight > 0)  # (B, T)
        if bool(own.any()):
            x_t = sampler_forced(model, x_t, noise, t, own, cond, window)

    # 4. the model's clean estimate, scored on the velocity
    x0_pred = model.denoiser(x_t, t, cond, block=cfg.chunk, window=window)
    pixels = None
    if tc.mouth_weight > 0 and stage != "motion":  # the mouth is a few % of a frame's pixels: weigh it up
        pixels = mouth_weight_map(mouth_boxes(batch, tc), (b, n_frames, *frames.shape[-2:]), tc.mouth_weight).to(dev)
    flow = target_mean(velocity_loss(x0_pred, x0, t, tc.t_min, pixels), weight)
    loss = flow + tc.encoder_weight * enc_loss
    parts = {"flow": flow.item(), "encoder": enc_loss.item()}
    if tc.edge_weight > 0:
        edge = target_mean(edge_loss(x0_pred, x0), weight)
        loss = loss + tc.edge_weight * edge
        parts["edge"] = edge.item()

    # 5. lip-reading loss on talking clips (stage 2 on)
    target = talking[:, None] & (weight > 0) & (t <= tc.lip_max_t)  # (B, T) talking target frames, not context
    if lip_reader is not None and stage != "motion" and bool(target.any()):
        pred = rearrange(x0_pred, "b c t h w -> b t c h w")[target]  # (n, C, H, W)
        real = rearrange(x0, "b c t h w -> b t c h w")[target]
        boxes = mouth_boxes(batch, tc, target)
        lip = lip_feature_loss(lip_reader, mouth_crops(pred, boxes), mouth_crops(real, boxes))
        loss = loss + tc.lip_weight * lip
        parts["lip"] = lip.item()
    parts["loss"] = loss.item()
    return loss, parts


class Objective(torch.nn.Module):
    """`batch_loss` as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: STARCaster) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, tc: TrainConfig, stage: Stage, g: torch.Generator, lip_reader=None):
        return batch_loss(self.model, batch, tc, stage, g, lip_reader)
