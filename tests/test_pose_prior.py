"""The head-pose prior: the camera it turns, what it learns, how generation uses it, and training it."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from core_helpers import TINY, tiny_model

from starcaster_core.audio import AudioFeatures
from starcaster_core.camera import head_relative, preset_trajectory
from starcaster_core.checkpoint import load_checkpoint, save_checkpoint
from starcaster_core.eval.geometry import view_angles
from starcaster_core.generate import POSE_SEED, GenerateSettings, SpeechConditioning, generate, head_motion
from starcaster_core.identity import random_identity
from starcaster_core.model import STARCaster
from starcaster_core.model.pose_prior import CONTEXT, WINDOW
from starcaster_core.synthetic.shards import write_shards
from starcaster_core.train.data import Sequences
from starcaster_core.train.pose import train_pose_prior

ROOT = Path(__file__).resolve().parents[1]
K, M = TINY.audio_window, TINY.audio_mels


def test_head_relative_is_the_worlds_view_of_a_turned_head():
    camera = preset_trajectory("arc", 40)  # (T, 4)
    pose = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 8.0
    turned = head_relative(camera, pose)
    # kornia quaternions here, the renderer's euler matrices there: the same rotation
    assert torch.allclose(turned[:, :3], view_angles(camera, pose), atol=1e-3)
    assert torch.equal(turned[:, 3], camera[:, 3]), "the distance is the camera's"
    assert torch.allclose(head_relative(camera, torch.zeros(40, 3)), camera, atol=1e-3)
    front = preset_trajectory("static", 40)
    small = torch.tensor([[4.0, 0.0, 0.0], [0.0, 3.0, 0.0]]).repeat(20, 1)  # a head turning left, then nodding
    assert torch.allclose(head_relative(front, small)[:, :3], -small, atol=1e-3), "frontal: the view is minus the pose"


def speech_world(n: int, frames: int, seed: int) -> Sequences:
    """Tracks that move only while there is sound: loud clips get a swaying head (yaw up to
    +-10 deg), silent clips a still one at a random fixed offset."""
    g = torch.Generator().manual_seed(seed)
    loud = torch.rand(n, generator=g) < 0.5  # (N,)
    audio = torch.where(loud[:, None, None, None], 1.0, -1.0) + 0.1 * torch.randn(n, frames, K, M, generator=g)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    speed = 0.15 + 0.1 * torch.rand(n, 1, generator=g)
    sway = 10.0 * torch.sin(phase + speed * torch.arange(frames)[None])  # (N, T)
    offset = (torch.rand(n, 1, 3, generator=g) * 2 - 1) * 3.0
    pose = offset + loud[:, None, None] * torch.stack([sway, 0.3 * sway, 0 * sway], dim=-1)  # (N, T, 3)
    return Sequences(torch.zeros(n, frames, 3, 1, 1, dtype=torch.uint8), audio, torch.zeros(n, frames, 4), True,
                     {"pose": pose})


@pytest.fixture(scope="module")
def trained() -> tuple[STARCaster, list[float]]:
    torch.manual_seed(0)
    model = STARCaster(TINY)
    losses = train_pose_prior(model, speech_world(256, 48, 0), steps=400, batch=32, lr=3e-3, seed=0)
    return model, losses


def test_the_prior_learns_that_a_speaking_head_moves(trained):
    model, losses = trained
    assert sum(losses[-40:]) / 40 < 0.3 * sum(losses[:40]) / 40
    n = 3 * WINDOW  # several windows, each continuing the last
    loud, silent = torch.ones(n, K, M), -torch.ones(n, K, M)
    spread = {}
    for name, audio in (("loud", loud), ("silent", silent)):
        tracks = [model.pose_prior.sample(audio, torch.Generator().manual_seed(s)) for s in range(4)]
        spread[name] = sum(float(t[:, 0].std()) for t in tracks) / len(tracks)
    assert spread["loud"] > 3.0 and spread["silent"] < 0.4 * spread["loud"], spread


def test_sampling_is_seeded_any_length_and_continues_across_windows(trained):
    prior = trained[0].pose_prior
    audio = torch.ones(100, K, M)
    a = prior.sample(audio, torch.Generator().manual_seed(1))
    assert a.shape == (100, 3) and torch.isfinite(a).all()
    assert torch.equal(a, prior.sample(audio, torch.Generator().manual_seed(1)))
    assert not torch.allclose(a, prior.sample(audio, torch.Generator().manual_seed(2)))
    step = a.diff(dim=0).abs()[:, 0]  # (T - 1,) yaw change per frame
    seams = torch.arange(WINDOW - 1, 99, WINDOW - CONTEXT)  # the frame before each new window starts
    assert float(step[seams].max()) < 4 * float(step.median()) + 0.5, "a jump where a window begins"


def speech(n: int, motion: float) -> SpeechConditioning:
    feats = AudioFeatures(torch.rand(n, K, M, generator=torch.Generator().manual_seed(3)), TINY.fps, n / TINY.fps)
    ident = random_identity(tiny_model(), 4)
    return SpeechConditioning(feats, ident, 1.0, motion)


def video(model: STARCaster, motion: float) -> torch.Tensor:
    chunks = generate(model, speech(8, motion), None, GenerateSettings(seed=0, steps=2, chunk=2, context=4),
                      device=torch.device("cpu"))
    return torch.cat([x for _, x in chunks])  # (T, C, H, W)


def test_generation_turns_the_head_as_the_prior_draws_it_scaled_by_motion():
    model = tiny_model()
    assert model.pose_prior is not None
    camera = preset_trajectory("static", 8)
    assert torch.equal(head_motion(model, speech(8, 0.0), camera, 0, torch.device("cpu")), camera)
    pose = model.pose_prior.sample(speech(8, 1.0).features.features, torch.Generator().manual_seed(POSE_SEED))
    turned = head_motion(model, speech(8, 0.5), camera, 0, torch.device("cpu"))
    assert torch.allclose(turned, head_relative(camera, 0.5 * pose), atol=1e-5)

    without = tiny_model()
    without.pose_prior = None
    assert torch.equal(video(model, 0.0), video(without, 0.0)), "motion 0: the prior is not asked"
    assert not torch.allclose(video(model, 1.0), video(without, 1.0), atol=1e-4)


def test_a_checkpoint_without_a_prior_loads_and_the_command_gives_it_one(tmp_path):
    old = tiny_model(pose_prior=0)
    assert old.pose_prior is None
    save_checkpoint(old, tmp_path / "old.safetensors")
    loaded = load_checkpoint(tmp_path / "old.safetensors")
    assert loaded.pose_prior is None and loaded.config.pose_prior == 0
    cam = preset_trajectory("static", 8)
    assert torch.equal(head_motion(loaded, speech(8, 1.0), cam, 0, torch.device("cpu")), cam)

    world = tmp_path / "world"
    write_shards(world / "talking", 4, "talking", seed=0, frames_per_seq=8, size=16, audio="formant")
    cmd = [sys.executable, "-m", "starcaster_core.train.pose", "--checkpoint", str(tmp_path / "old.safetensors"),
           "--data", str(world), "--out", str(tmp_path / "new.safetensors"), "--steps", "3", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    new = load_checkpoint(tmp_path / "new.safetensors")
    assert new.config == TINY, "the preset's prior width"
    before, after = old.state_dict(), new.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the other weights are untouched"
    assert any(k.startswith("pose_prior.") for k in after)
