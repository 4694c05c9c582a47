"""The denoiser's block-causal rule, its KV cache, and the autoregressive sampler."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from core_helpers import TINY, tiny_cond, tiny_model, tiny_video

from starcaster_core.bench.baseline import sliding_window_video
from starcaster_core.flow import timesteps
from starcaster_core.model.pixel_head import faded
from starcaster_core.mouth_box import box_mask
from starcaster_core.sampler import Guidance, sample_video


@torch.no_grad()
@pytest.mark.parametrize("window", [None, 2, 4])
def test_cached_chunks_equal_full_causal_forward(window):
    model = tiny_model().denoiser
    frames, block = 8, TINY.chunk
    x, cond = tiny_video(frames), tiny_cond(frames)
    t = torch.rand(1, frames, generator=torch.Generator().manual_seed(3))
    full = model(x, t, cond, block=block, window=window)
    cache = model.new_cache(window)
    parts = []
    for s in range(0, frames, block):
        parts.append(model(x[:, :, s : s + block], t[:, s : s + block], cond.frame_slice(s, s + block),
                           frame_offset=s, cache=cache, write_cache=True, block=block, window=window))
        assert len(cache) <= (window if window is not None else frames)
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-4, rtol=0)


@torch.no_grad()
def test_a_cache_write_without_estimate_caches_the_same_keys_and_values():
    model = tiny_model().denoiser
    x, cond, t = tiny_video(4), tiny_cond(4), torch.full((1, 4), 0.1)
    full, keys_only = model.new_cache(None), model.new_cache(None)
    for s in (0, 2):
        args = (x[:, :, s : s + 2], t[:, s : s + 2], cond.frame_slice(s, s + 2))
        assert model(*args, frame_offset=s, cache=full, write_cache=True, block=2) is not None
        assert model(*args, frame_offset=s, cache=keys_only, write_cache=True, block=2, estimate=False) is None
    assert len(keys_only) == len(full) == 4
    for i in range(TINY.depth):
        for a, b in zip(full.layer(i), keys_only.layer(i), strict=True):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


@torch.no_grad()
def test_later_frames_never_change_earlier_ones():
    model = tiny_model().denoiser
    frames, block = 8, TINY.chunk
    x, cond = tiny_video(frames), tiny_cond(frames)
    t = torch.full((1, frames), 0.5)
    base = model(x, t, cond, block=block)
    x2 = x.clone()
    x2[:, :, 5] += 3.0  # frame 5 lives in chunk 2 (frames 4, 5)
    audio2 = cond.audio.clone()
    audio2[:, 6:] = -audio2[:, 6:]
    out = model(x2, t, replace(cond, audio=audio2), block=block)
    assert torch.equal(out[:, :, :4], base[:, :, :4]), "an earlier chunk saw a later frame"
    assert not torch.allclose(out[:, :, 4:], base[:, :, 4:]), "the changed chunk must change"


@pytest.mark.parametrize("guidance,context_noise,frames,context", [
    (Guidance(), 0.0, 9, 4), (Guidance(audio=2.0, identity=1.5), 0.0, 9, 4), (Guidance(audio=2.0), 0.2, 9, 4),
    (Guidance(), 0.1, 17, 2),  # longer than the recompute window (depth * (context + chunk) = 8 frames)
])
@torch.no_grad()
def test_sampler_cache_equals_recompute(guidance, context_noise, frames, context):
    model = tiny_model(context_noise=context_noise).denoiser
    cond = tiny_cond(frames, batch=2)
    kw = dict(chunk=2, context=context, guidance=guidance, schedule=timesteps(3, shift=2.0))
    cached = sample_video(model, cond, generator=torch.Generator().manual_seed(5), use_cache=True, **kw)
    recomputed = sample_video(model, cond, generator=torch.Generator().manual_seed(5), use_cache=False, **kw)
    assert cached.shape == (2, TINY.channels, frames, TINY.height, TINY.width)
    torch.testing.assert_close(cached, recomputed, atol=1e-4, rtol=0)


@torch.no_grad()
def test_seeded_sampling_repeats_exactly_and_seeds_differ():
    model = tiny_model().denoiser
    cond = tiny_cond(6)
    kw = dict(chunk=2, context=4, schedule=timesteps(2))
    a = sample_video(model, cond, generator=torch.Generator().manual_seed(11), **kw)
    b = sample_video(model, cond, generator=torch.Generator().manual_seed(11), **kw)
    c = sample_video(model, cond, generator=torch.Generator().manual_seed(12), **kw)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@torch.no_grad()
def test_sampler_callback_and_interrupt():
    model = tiny_model().denoiser
    seen = []

    class Stop(Exception):
        pass

    def interrupt():
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        sample_video(model, tiny_cond(8), timesteps(2), generator=torch.Generator(), chunk=2, context=2,
                     callback=seen.append, interrupt=interrupt)
    assert [(d["start"], d["i"]) for d in seen] == [(0, 0), (0, 1), (2, 0)]
    assert seen[0]["denoised"].shape == (1, TINY.channels, 2, TINY.height, TINY.width)


@torch.no_grad()
def test_guidance_changes_output_only_when_scaled():
    model = tiny_model().denoiser
    cond = tiny_cond(4)
    kw = dict(chunk=2, context=2, schedule=timesteps(2))
    plain = sample_video(model, cond, generator=torch.Generator().manual_seed(1), **kw)
    guided = sample_video(model, cond, generator=torch.Generator().manual_seed(1), guidance=Guidance(audio=3.0), **kw)
    assert not torch.allclose(plain, guided)


@torch.no_grad()
def test_cache_rollback_regenerates_the_last_chunk_identically():
    model = tiny_model().denoiser
    x, cond, t = tiny_video(6), tiny_cond(6), torch.full((1, 6), 0.4)
    cache = model.new_cache(None)
    for s in (0, 2):
        model(x[:, :, s : s + 2], t[:, s : s + 2], cond.frame_slice(s, s + 2), frame_offset=s, cache=cache,
              write_cache=True, block=2)
    first = model(x[:, :, 4:6], t[:, 4:6], cond.frame_slice(4, 6), frame_offset=4, cache=cache,
                  write_cache=True, block=2)
    assert len(cache) == 6
    cache.rollback(2)
    assert len(cache) == 4 and cache.layer(0)[0].shape[2] == 4 * TINY.tokens_per_frame
    again = model(x[:, :, 4:6], t[:, 4:6], cond.frame_slice(4, 6), frame_offset=4, cache=cache, block=2)
    torch.testing.assert_close(again, first, atol=1e-6, rtol=0)


@torch.no_grad()
def test_compiled_blocks_sample_the_same_video():
    """torch.compile'd blocks (the loader's compile option) change speed, not the video."""
    model = tiny_model().denoiser
    cond, kw = tiny_cond(8), dict(chunk=2, context=4, schedule=timesteps(2))
    eager = sample_video(model, cond, generator=torch.Generator().manual_seed(3), **kw)
    keys = list(model.state_dict())
    model.compile_blocks()
    assert all(blk._compiled_call_impl is not None for blk in model.blocks)
    compiled = sample_video(model, cond, generator=torch.Generator().manual_seed(3), **kw)
    assert list(model.state_dict()) == keys  # checkpoints save and load as before
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)


@torch.no_grad()
def test_fit_prior_recovers_a_linear_frame_map_from_streamed_batches():
    model = tiny_model().denoiser
    g = torch.Generator().manual_seed(4)
    n, d_in = 240, TINY.identity_dim + TINY.camera_dim
    inputs = torch.randn(n, d_in, generator=g)
    weight = torch.randn(d_in, TINY.channels * TINY.height * TINY.width, generator=g) * 0.1
    frames = (inputs @ weight + 0.3).view(n, TINY.channels, TINY.height, TINY.width)
    frames = frames + 0.01 * torch.randn(frames.shape, generator=g)  # noise the fit cannot explain
    mse = model.fit_prior((inputs[i : i + 100], frames[i : i + 100]) for i in range(0, n, 100))
    assert 0.5e-4 < mse < 1.5e-4, f"the residual must be the noise's variance (1e-4), got {mse}"
    held = torch.randn(8, d_in, generator=g)
    torch.testing.assert_close(model.prior(held), held @ weight + 0.3, atol=0.02, rtol=0)


@torch.no_grad()
def test_frame_prior_reads_the_identity_only_when_it_is_on():
    model = tiny_model().denoiser
    cond = tiny_cond(4, batch=2)
    off = cond.with_flags(use_audio=True, use_identity=False)
    other = replace(off, identity=off.identity + 1.0)
    assert torch.equal(model.frame_prior(off), model.frame_prior(other)), "switched-off identity leaked"
    assert not torch.allclose(model.frame_prior(cond), model.frame_prior(off))


@torch.no_grad()
def test_head_skip_reads_the_noisy_frame_only_below_pure_noise():
    head = tiny_model().denoiser.head
    torch.nn.init.normal_(head.conv_out.weight, std=0.1)  # a trained head's last layer is not zero
    b, t_frames, c, size, p = 1, 2, TINY.channels, TINY.height, TINY.patch
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(b, t_frames * (size // p) ** 2, TINY.dim, generator=g)
    base = torch.randn(b, c, t_frames, size, size, generator=g)
    x_a, x_b, before = (torch.randn(b, c, t_frames, size, size, generator=g) for _ in range(3))
    prev = faded(before, torch.zeros(b, t_frames))  # the tiny preset's head also reads a previous frame
    portrait = torch.cat([base, torch.ones(b, 1, t_frames, size, size)], dim=1)  # ...and a portrait

    def skip(x, level):  # the head's extra inputs, as the denoiser makes them
        return torch.cat([faded(x, level), prev, portrait], dim=1)

    pure = torch.ones(b, t_frames)
    assert torch.equal(head(tokens, base, skip(x_a, pure)), head(tokens, base, skip(x_b, pure))), "noise leaked"
    half = torch.full((b, t_frames), 0.5)
    assert not torch.allclose(head(tokens, base, skip(x_a, half)), head(tokens, base, skip(x_b, half)))


@torch.no_grad()
def test_reference_portrait_reaches_the_estimate_only_with_the_identity_on():
    """A `reference_frame` model reads the portrait; with the identity switched off (guidance's
    unconditional branch) or no portrait given, it reads nothing of it."""
    model = tiny_model().denoiser
    cond = tiny_cond(4, batch=2)
    x, t = tiny_video(4, batch=2), torch.full((2, 4), 0.5)
    portrait = torch.rand(2, TINY.channels, TINY.height, TINY.width, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with_a = replace(cond, reference=portrait)
    with_b = replace(cond, reference=-portrait)
    assert not torch.allclose(model(x, t, with_a), model(x, t, with_b)), "the portrait must change the estimate"
    off = {"use_audio": True, "use_identity": False}
    assert torch.equal(model(x, t, with_a.with_flags(**off)), model(x, t, with_b.with_flags(**off)))
    dropped = replace(with_a, use_reference=torch.tensor([False, True]))
    none, est = model(x, t, cond), model(x, t, dropped)
    assert torch.equal(est[0], none[0]), "a dropped portrait must read as no portrait"
    assert not torch.allclose(est[1], none[1])


@torch.no_grad()
def test_a_mouth_masked_portrait_is_read_everywhere_but_in_the_mouth_box():
    """`reference_mask_mouth`: what the portrait shows inside the mouth box never reaches the
    estimate, what it shows outside does (the same model without the mask reads both)."""
    x, t, cond = tiny_video(4), torch.full((1, 4), 0.5), tiny_cond(4)
    portrait = torch.rand(1, TINY.channels, TINY.height, TINY.width, generator=torch.Generator().manual_seed(3)) * 2 - 1
    inside = box_mask(None, (TINY.height, TINY.width))  # (H, W)
    assert 0 < inside.float().mean() < 0.5
    mouth_changed = torch.where(inside, -portrait, portrait)
    rest_changed = torch.where(inside, portrait, -portrait)
    masked, plain = tiny_model(reference_mask_mouth=True).denoiser, tiny_model().denoiser

    def estimate(model, image):
        return model(x, t, replace(cond, reference=image))

    assert torch.equal(estimate(masked, portrait), estimate(masked, mouth_changed))
    assert not torch.allclose(estimate(masked, portrait), estimate(masked, rest_changed))
    assert not torch.allclose(estimate(plain, portrait), estimate(plain, mouth_changed))


@torch.no_grad()
def test_context_noise_changes_only_the_chunks_after_the_first():
    """The kept context is the generated chunk noised to the model's context_noise level: the
    first chunk (no context) is the same as without, later chunks see a different context."""
    kw = dict(chunk=2, context=4, schedule=timesteps(3))
    cond = tiny_cond(6)
    plain, noisy = (sample_video(tiny_model(context_noise=c).denoiser, cond, generator=torch.Generator().manual_seed(2),
                                 **kw) for c in (0.0, 0.2))
    torch.testing.assert_close(plain[:, :, :2], noisy[:, :, :2], atol=0, rtol=0)
    assert (plain[:, :, 2:] - noisy[:, :, 2:]).abs().max() > 1e-3


@torch.no_grad()
def test_the_audio_canvas_adds_the_audio_to_the_token_positions_it_gates():
    model = tiny_model().denoiser  # the tiny preset has the audio canvas on
    n0 = 5  # the only token position whose gate is open
    model.audio_where.zero_()
    model.audio_where[n0] = 1.0
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))  # the first block's tokens
    x, t = tiny_video(2), torch.full((1, 2), 0.5)
    loud, quiet = tiny_cond(2, seed=0), tiny_cond(2, seed=0)
    quiet = replace(quiet, audio=quiet.audio * 0.1)
    model(x, t, loud)
    model(x, t, quiet)
    change = (seen[0] - seen[1]).view(2, TINY.tokens_per_frame, TINY.dim)  # (T, N, D)
    expected = (model.audio_embedding(loud) - model.audio_embedding(quiet))[0]  # (T, D)
    torch.testing.assert_close(change[:, n0], expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 0.01
    assert change[:, [n for n in range(TINY.tokens_per_frame) if n != n0]].abs().max() == 0


def test_every_frame_reads_the_last_frame_before_its_chunk_faded_by_its_level():
    from starcaster_core.model.pixel_head import faded
    from starcaster_core.model.previous_frame import previous_frames

    # frames 3..8 of a video in chunks of 2 ([2, 3], [4, 5], [6, 7], [8, 9]); pixel value = frame index
    x = torch.arange(3, 9).float().view(1, 1, 6, 1, 1).expand(1, 1, 6, 2, 2)
    t = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.0, 0.0]])  # frame 5 is half noise
    given = (torch.full((1, 1, 1, 2, 2), 1.0), torch.zeros(1, 1))  # frame 1, before the chunk [2, 3]
    out = faded(*previous_frames(x, t, offset=3, block=2, previous=given))  # as the model reads it: (1, 2, 6, 2, 2)
    assert out[0, 0, :, 0, 0].tolist() == [1.0, 3.0, 3.0, 5.0 * 0.5, 5.0 * 0.5, 7.0]
    assert out[0, 1, :, 0, 0].tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 0.0]  # the level plane
    first = faded(*previous_frames(x[:, :, 1:], t[:, 1:], offset=4, block=2, previous=None))  # a video's first chunk...
    assert first[0, :, :2].tolist() == torch.cat([torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)]).tolist()  # nothing


@torch.no_grad()
def test_without_context_a_chunk_still_reads_the_frame_before_it_and_no_other():
    model = tiny_model().denoiser  # the tiny preset reads the previous frame
    x, cond, t = tiny_video(6), tiny_cond(6), torch.full((1, 6), 0.3)
    base = model(x, t, cond, block=2, window=0)  # attention within each chunk only

    def changed(frame: int) -> torch.Tensor:
        x2 = x.clone()
        x2[:, :, frame] += 3.0
        return model(x2, t, cond, block=2, window=0)

    assert (changed(1)[:, :, 2:4] - base[:, :, 2:4]).abs().max() > 1e-3  # frame 1 ends the chunk before [2, 3]
    assert torch.equal(changed(0)[:, :, 2:4], base[:, :, 2:4])


def test_spatial_rotary_scores_depend_only_on_relative_frame_and_cell():
    """With spatial_rope, a query/key pair's attention score depends on the difference of their
    (frame, row, column), so one head can attend to "the same place one frame back" anywhere."""
    from starcaster_core.model.embeddings import apply_rotary, rotary_angles

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32, generator=g), torch.randn(1, 1, 1, 32, generator=g)

    def score(q_at: tuple[int, int, int], k_at: tuple[int, int, int]) -> float:
        pos = [torch.tensor([q_at[i], k_at[i]]) for i in range(3)]  # frame, row, column of q and k
        rope = rotary_angles(pos[0], 32, (pos[1], pos[2]))
        both = apply_rotary(torch.cat([q, k], dim=2), rope)  # (1, 1, 2, 32)
        return float(both[0, 0, 0] @ both[0, 0, 1])

    same = score((5, 2, 3), (4, 2, 3))
    assert abs(score((9, 6, 0), (8, 6, 0)) - same) < 1e-4  # same offsets elsewhere: same score
    assert abs(score((5, 2, 3), (4, 3, 3)) - same) > 1e-3  # another row: another score
    assert abs(score((5, 2, 3), (4, 2, 4)) - same) > 1e-3  # another column: another score
    # without cells only the frame is rotated: the second half of the channels is untouched
    plain = apply_rotary(q, rotary_angles(torch.tensor([7]), 32))
    assert torch.equal(plain[..., 16:], q[..., 16:]) and not torch.allclose(plain[..., :16], q[..., :16])
    with_cells = apply_rotary(q, rotary_angles(torch.tensor([7]), 32, (torch.tensor([1]), torch.tensor([2]))))
    assert torch.equal(with_cells[..., :16], plain[..., :16]) and not torch.allclose(with_cells[..., 16:], q[..., 16:])


@torch.no_grad()
def test_copy_previous_starts_every_chunk_from_the_clean_frame_before_it():
    """An untrained copy_previous model (zero output layers) holds the picture still: its
    estimate of a chunk is the (almost) clean frame before it, and the frame prior's mean where
    that frame is missing (a video's start) or too noisy."""
    from starcaster_core.model import STARCaster

    model = STARCaster(replace(TINY, context_noise=0.0)).denoiser.eval()  # zero-initialised output
    model.prior.bias.fill_(0.25)  # mu = 0.25 everywhere
    x, cond = tiny_video(6), tiny_cond(6)
    t = torch.tensor([[0.0, 0.05, 1.0, 1.0, 0.5, 0.5]])  # chunks [0, 1] clean, [2, 3] pure noise, [4, 5] half
    out = model(x, t, cond, block=2)
    torch.testing.assert_close(out[:, :, 0:2], torch.full_like(out[:, :, 0:2], 0.25))  # no frame before: mu
    torch.testing.assert_close(out[:, :, 2:4], x[:, :, 1:2].expand_as(out[:, :, 2:4]))  # frame 1, at t = 0.05
    torch.testing.assert_close(out[:, :, 4:6], torch.full_like(out[:, :, 4:6], 0.25))  # frame 3 is pure noise


def test_bf16_training_attention_equals_sdpa_in_values_and_gradients():
    """`attend` writes the product out for bf16 training on a CPU (SDPA's CPU backward is slow
    there); it must compute what SDPA computes, forward and backward, and keep SDPA elsewhere."""
    import torch.nn.functional as F

    from starcaster_core.model.attention import attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 32, generator=g) for _ in range(3))
    k = torch.cat([k, torch.randn(2, 4, 20, 32, generator=g)], dim=2)  # more keys than queries
    v = torch.cat([v, torch.randn(2, 4, 20, 32, generator=g)], dim=2)
    up = torch.randn(2, 4, 16, 32, generator=g)  # upstream gradient

    def run(fn, dtype):
        leaves = [x.detach().to(dtype).clone().requires_grad_() for x in (q, k, v)]
        out = fn(*leaves)
        out.backward(up.to(dtype))
        return out.float(), [x.grad.float() for x in leaves]

    ref, ref_grads = run(F.scaled_dot_product_attention, torch.float32)
    out, grads = run(attend, torch.bfloat16)
    torch.testing.assert_close(out, ref, atol=3e-2, rtol=3e-2)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=5e-2, rtol=5e-2)
    assert grads[0].abs().mean() > 0.05  # gradients reach the queries
    # the bf16 product written out is the path taken (SDPA in bf16 differs from it in rounding) ...
    manual = ((q.bfloat16() * 32 ** -0.5) @ k.bfloat16().transpose(-1, -2)).softmax(-1) @ v.bfloat16()
    assert torch.equal(attend(*(x.bfloat16().requires_grad_() for x in (q, k, v))).detach(), manual)
    # ... and without gradients (sampling) SDPA is
    with torch.no_grad():
        assert torch.equal(attend(q.bfloat16(), k.bfloat16(), v.bfloat16()),
                           F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()))


@pytest.mark.parametrize("overlap", [4, 12])
def test_sliding_window_baseline_makes_every_frame_once_and_repasses_its_overlap(overlap):
    """The bench's baseline: exactly the frames asked for (none padded or cut), each window of
    16 frames denoised `steps` times, windows moving on by 16 - overlap frames; the frames
    before a window's new ones are the earlier windows' output, never redrawn."""
    model, frames, steps = tiny_model().denoiser, 30, 3
    passes = []
    hook = model.register_forward_hook(lambda m, args, out: passes.append(args[0].shape[2]))
    video = sliding_window_video(model, tiny_cond(frames), timesteps(steps), window=16, overlap=overlap,
                                 generator=torch.Generator().manual_seed(0))
    hook.remove()
    assert video.shape[2] == frames
    windows = 1 + math.ceil((frames - 16) / (16 - overlap))
    assert len(passes) == windows * steps and passes[0] == 16 and max(passes) == 16
    first = sliding_window_video(model, tiny_cond(frames).frame_slice(0, 16), timesteps(steps), window=16,
                                 overlap=overlap, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(video[:, :, :16], first, rtol=0, atol=0)


@torch.no_grad()
def test_the_mouth_branch_corrects_its_window_from_the_estimate_the_portrait_and_the_audio():
    from starcaster_core.model.mouth_branch import AUDIO_PLANES, MARGIN, mouth_window

    model = tiny_model().denoiser  # the tiny preset has a mouth branch
    branch = model.mouth
    x, t = tiny_video(2), torch.full((1, 2), 0.5)
    portrait = torch.rand(1, TINY.channels, TINY.height, TINY.width, generator=torch.Generator().manual_seed(3))
    cond = replace(tiny_cond(2, seed=0), reference=portrait * 2 - 1, use_reference=torch.ones(1, dtype=torch.bool))
    rows, cols = mouth_window(TINY.height, TINY.width)
    inside = torch.zeros(TINY.height, TINY.width, dtype=torch.bool)
    inside[rows, cols] = True
    box = box_mask(None, (TINY.height, TINY.width))
    ys, xs = box.nonzero(as_tuple=True)  # the window is the default mouth box grown by the margin
    assert (rows.start, cols.start) == (max(0, int(ys.min()) - MARGIN), max(0, int(xs.min()) - MARGIN))
    assert (rows.stop, cols.stop) == (min(TINY.height, int(ys.max()) + 1 + MARGIN),
                                      min(TINY.width, int(xs.max()) + 1 + MARGIN))

    model.mouth = None
    plain = model(x, t, cond)
    model.mouth = branch
    branch.zero_init()  # as a new model's: it adds nothing
    assert torch.equal(model(x, t, cond), plain)

    torch.nn.init.normal_(branch.conv[-1].weight, std=0.1)  # a trained branch's last layer is not zero
    trained = model(x, t, cond)
    change = (trained - plain).abs().amax(dim=(0, 1, 2))  # (H, W)
    assert change[~inside].max() == 0 and change[inside].min() > 0
    core = (slice(rows.start + MARGIN, rows.stop - MARGIN), slice(cols.start + MARGIN, cols.stop - MARGIN))
    assert change[rows.start, cols][MARGIN:-MARGIN].max() < change[core].mean(), "the window's edge is not faded"
    # its correction reads each of its inputs: the estimate, the noisy frame, the audio, the full-resolution planes
    gen = torch.Generator().manual_seed(4)
    frames = (1, TINY.channels, 2, TINY.height, TINY.width)
    extra = branch.conv[0].in_channels - (2 * TINY.channels + 1) - AUDIO_PLANES  # the portrait's planes among them
    inputs = {"estimate": torch.randn(frames, generator=gen), "x_t": torch.randn(frames, generator=gen), "t": t,
              "audio": torch.randn(1, 2, TINY.dim, generator=gen),
              "extra": torch.randn(1, extra, 2, TINY.height, TINY.width, generator=gen)}
    correction = branch(**inputs) - inputs["estimate"]
    for name in ("estimate", "x_t", "audio", "extra"):
        changed = {**inputs, name: inputs[name] + 1}
        moved = branch(**changed) - changed["estimate"] - correction
        assert moved[..., core[0], core[1]].abs().max() > 1e-3, f"the branch does not read its {name}"
