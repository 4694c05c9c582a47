"""The portrait turned to another camera (`view_warp.py`) and the models that read it that way."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from core_helpers import TINY, tiny_model, tiny_video

from starcaster_core.camera import pose_features
from starcaster_core.conditioning import make_conditioning
from starcaster_core.eval.meters import DEFAULT_METERS, load_meters
from starcaster_core.model.reference_frame import reference_planes
from starcaster_core.mouth_box import box_mask
from starcaster_core.synthetic import sample_identity
from starcaster_core.synthetic.render import identity_rows, render_frames
from starcaster_core.view_warp import warp_portrait

TURNS = torch.tensor([[20.0, 0, 0, 1], [-20.0, 0, 0, 1], [0, 10.0, 0, 1], [0, -10.0, 0, 1]])  # (4, 4)
FRONT = torch.tensor([[0.0, 0, 0, 1]])


def test_a_portrait_warped_to_its_own_camera_is_itself():
    portrait = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    cams = torch.tensor([[15.0, -5, 3, 1.1], [-30.0, 8, 0, 0.9]])  # (2, 4)
    same = warp_portrait(portrait, pose_features(cams), pose_features(cams)[:, None])  # (2, 3, 1, 32, 48)
    assert torch.equal(same[:, :, 0], portrait), "its own camera: the portrait itself, not resampled"
    # a camera a hair away is resampled, and lands within interpolation error of the portrait
    near = pose_features(cams + torch.tensor([1e-3, 0, 0, 0]))[:, None]
    torch.testing.assert_close(warp_portrait(portrait, pose_features(cams), near)[:, :, 0], portrait, atol=1e-3, rtol=0)
    moved = warp_portrait(portrait, pose_features(cams), pose_features(cams.flip(0))[:, None])
    assert (moved[:, :, 0] - portrait).abs().mean() > 0.05


@pytest.mark.parametrize("seed", [5, 11])
def test_a_frontal_render_warped_to_a_camera_looks_like_the_render_from_it(seed):
    """The demo world's frontal portrait, warped to cameras turned 20 degrees either way and
    raised or lowered 10: the eval's pose meter reads most of the turn (the unwarped portrait
    reads none of it), and the pixels are closer to the true render from that camera."""
    ident = identity_rows(sample_identity(seed))
    truth = render_frames(ident, None, None, TURNS, size=64, batch=4) * 2 - 1  # (4, 3, 64, 64)
    front = render_frames(ident, None, None, FRONT, size=64, batch=1) * 2 - 1  # (1, 3, 64, 64)
    warped = warp_portrait(front, pose_features(FRONT), pose_features(TURNS)[None])[0].transpose(0, 1)  # (4, 3, H, W)
    view = load_meters(DEFAULT_METERS).measure((warped + 1) / 2).view  # (4, 3) yaw, pitch, roll
    assert view[0, 0] - view[1, 0] > 25, f"yaw +-20 measured {view[:2, 0].tolist()}"
    assert view[2, 1] - view[3, 1] > 12, f"pitch +-10 measured {view[2:, 1].tolist()}"
    err_warped = (warped - truth).pow(2).mean()
    err_front = (front - truth).pow(2).mean()
    assert err_warped < 0.75 * err_front, f"warped {err_warped:.4f} vs unwarped {err_front:.4f}"


def test_a_reference_warp_model_reads_the_portrait_turned_by_each_frames_camera():
    cams = torch.tensor([[0.0, 0, 0, 1], [10.0, 0, 0, 1], [20.0, 5, 0, 1], [30.0, 5, 0, 1]])  # (T, 4)
    g = torch.Generator().manual_seed(0)
    cond = make_conditioning(
        identity=torch.randn(1, TINY.identity_dim, generator=g),
        audio=torch.randn(1, 4, TINY.audio_window, TINY.audio_mels, generator=g),
        camera=pose_features(cams)[None], reference=torch.rand(1, 3, TINY.height, TINY.width, generator=g) * 2 - 1,
    )
    x = tiny_video(4)
    planes = reference_planes(cond, x, warp=True)  # (1, C + 1, T, H, W)
    torch.testing.assert_close(planes[:, :3], warp_portrait(cond.reference, pose_features(FRONT), cond.camera))
    torch.testing.assert_close(planes[:, :3, 0], cond.reference, atol=0, rtol=0)  # frame 0 is frontal
    assert (planes[:, :3, 3] - cond.reference).abs().mean() > 0.05
    # the portrait's own camera: a portrait filmed from frame 2's camera is read as is there
    own = reference_planes(replace(cond, reference_camera=cond.camera[:, 2]), x, warp=True)
    torch.testing.assert_close(own[:, :3, 2], cond.reference, atol=0, rtol=0)
    with torch.no_grad():
        model, t = tiny_model(reference_warp=True).denoiser, torch.full((1, 4), 0.5)
        turned = model(x, t, replace(cond, reference_camera=cond.camera[:, 3]))
        assert (model(x, t, cond) - turned).abs().mean() > 1e-4, "the portrait's camera must reach the estimate"


def _turning_cond(frames: int, batch: int = 1):
    """A conditioning whose camera turns 5 degrees a frame, with a random portrait."""
    g = torch.Generator().manual_seed(3)
    cams = torch.zeros(frames, 4)
    cams[:, 0], cams[:, 3] = torch.arange(frames) * 5.0, 1.0
    return make_conditioning(
        identity=torch.randn(batch, TINY.identity_dim, generator=g),
        audio=torch.randn(batch, frames, TINY.audio_window, TINY.audio_mels, generator=g),
        camera=pose_features(cams)[None].expand(batch, -1, -1),
        reference=torch.rand(batch, 3, TINY.height, TINY.width, generator=g) * 2 - 1,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_portrait_turned_once_gives_the_estimate_of_one_turned_in_the_pass(dtype):
    """`with_reference_views` (what the sampler calls once per chunk) changes nothing but
    where the warp runs: the estimate is the one the pass makes warping the portrait itself,
    bit for bit, in fp32 and bf16; a model without the warp gets its conditioning back as is."""
    model = tiny_model(reference_warp=True).denoiser.to(dtype)
    cond, x, t = _turning_cond(4), tiny_video(4), torch.full((1, 4), 0.6)
    turned = model.with_reference_views(cond, x.device)
    assert turned.reference_views.shape == (1, 3, 4, TINY.height, TINY.width)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, turned), model(x, t, cond), atol=0, rtol=0)
        # and views that are not this portrait's do reach the estimate (they are what it reads)
        wrong = replace(turned, reference_views=turned.reference_views.flip(2))
        assert (model(x, t, wrong) - model(x, t, cond)).abs().mean() > 1e-4
    assert tiny_model(reference_frame=True).denoiser.with_reference_views(cond, x.device) is cond


def test_the_sampler_turns_the_portrait_once_per_chunk(monkeypatch):
    """Every Euler step and the cache pass of a chunk read the same turned portrait, so the
    sampler warps once per chunk (3 chunks: 3 warps, not 3 x (4 steps + 1)), with guidance
    branches in the same warp, and the video equals the one made warping in every pass."""
    import starcaster_core.model.reference_frame as reference_frame
    from starcaster_core.flow import timesteps
    from starcaster_core.sampler import Guidance, sample_video

    model = tiny_model(reference_warp=True).denoiser
    cond, calls = _turning_cond(6), []
    real_warp = reference_frame.warp_portrait

    def counted(*args):
        calls.append(args[0].shape[0])
        return real_warp(*args)

    monkeypatch.setattr(reference_frame, "warp_portrait", counted)
    kw = dict(chunk=2, context=4, guidance=Guidance(audio=2.0))
    with torch.no_grad():
        video = sample_video(model, cond, timesteps(4), generator=torch.Generator().manual_seed(0), **kw)
    assert calls == [2, 2, 2], f"warps per chunk (batch of each): {calls}"
    # the same video from passes that each warp for themselves
    monkeypatch.setattr(type(model), "with_reference_views", lambda self, c, device: c)
    with torch.no_grad():
        again = sample_video(model, cond, timesteps(4), generator=torch.Generator().manual_seed(0), **kw)
    assert len(calls) == 3 + 3 * (4 + 1)
    torch.testing.assert_close(video, again, atol=0, rtol=0)


def test_a_mouth_masked_portrait_turns_its_hole_with_the_face():
    """`reference_mask_mouth`: the portrait's mouth box is blanked before the warp, so the hole
    (portrait and plane 0) is the default box on a frame filmed from the portrait's camera and
    moves with the turn on the others; turned once (`with_reference_views`, C + 1 planes) or in
    the pass, the estimate is the same."""
    cond, x = _turning_cond(4), tiny_video(4)
    planes = reference_planes(cond, x, warp=True, mask_mouth=True)  # (1, C + 1, T, H, W)
    hole = box_mask(None, (TINY.height, TINY.width))  # (H, W)
    assert torch.equal(planes[0, 3, 0] == 0, hole), "frame 0 is frontal: the hole is the box itself"
    assert (planes[0, :3, 0][:, hole] == 0).all() and (planes[0, :3, 0][:, ~hole] != 0).all()
    turned_hole = planes[0, 3, 3] < 0.5  # 15 degrees on
    assert turned_hole.any() and not torch.equal(turned_hole, hole), "the hole must turn with the face"
    plain = reference_planes(cond, x, warp=True)
    assert (plain[:, 3] == 1).all(), "without the mask the plane only says the portrait is there"
    model = tiny_model(reference_warp=True, reference_mask_mouth=True).denoiser
    turned = model.with_reference_views(cond, x.device)
    assert turned.reference_views.shape == (1, 4, 4, TINY.height, TINY.width)
    with torch.no_grad():
        t = torch.full((1, 4), 0.6)
        torch.testing.assert_close(model(x, t, turned), model(x, t, cond), atol=0, rtol=0)
