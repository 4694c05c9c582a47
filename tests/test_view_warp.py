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
from starcaster_core.synthetic import sample_identity
from starcaster_core.synthetic.render import identity_rows, render_frames
from starcaster_core.view_warp import warp_portrait

TURNS = torch.tensor([[20.0, 0, 0, 1], [-20.0, 0, 0, 1], [0, 10.0, 0, 1], [0, -10.0, 0, 1]])  # (4, 4)
FRONT = torch.tensor([[0.0, 0, 0, 1]])


def test_a_portrait_warped_to_its_own_camera_is_itself():
    portrait = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    cams = torch.tensor([[15.0, -5, 3, 1.1], [-30.0, 8, 0, 0.9]])  # (2, 4)
    same = warp_portrait(portrait, pose_features(cams), pose_features(cams)[:, None])  # (2, 3, 1, 32, 48)
    torch.testing.assert_close(same[:, :, 0], portrait, atol=1e-4, rtol=0)
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
    torch.testing.assert_close(planes[:, :3, 0], cond.reference, atol=1e-4, rtol=0)  # frame 0 is frontal
    assert (planes[:, :3, 3] - cond.reference).abs().mean() > 0.05
    # the portrait's own camera: a portrait filmed from frame 2's camera is read as is there
    own = reference_planes(replace(cond, reference_camera=cond.camera[:, 2]), x, warp=True)
    torch.testing.assert_close(own[:, :3, 2], cond.reference, atol=1e-4, rtol=0)
    with torch.no_grad():
        model, t = tiny_model(reference_warp=True).denoiser, torch.full((1, 4), 0.5)
        turned = model(x, t, replace(cond, reference_camera=cond.camera[:, 3]))
        assert (model(x, t, cond) - turned).abs().mean() > 1e-4, "the portrait's camera must reach the estimate"
