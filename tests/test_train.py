"""The trainer on tiny data: every stage's step lowers its loss, the lip reader learns, the
loop resumes, and two torchrun processes end with identical weights."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from starcaster_core.checkpoint import load_checkpoint
from starcaster_core.config import PRESETS
from starcaster_core.flow import velocity_loss
from starcaster_core.model import STARCaster
from starcaster_core.mouth_box import DEFAULT_BOX
from starcaster_core.synthetic.shards import write_shards
from starcaster_core.train.config import TrainConfig
from starcaster_core.train.data import ClipSampler, load_sequences
from starcaster_core.train.lip_reader import (
    LipReader,
    adversarial_crops,
    lip_feature_loss,
    lip_reader_loss,
    mouth_crops,
    mouth_weight_map,
)
from starcaster_core.train.objective import batch_loss, jitter, reference_condition

ROOT = Path(__file__).resolve().parents[1]
SMALL = replace(PRESETS["demo"], name="small", dim=64, depth=2, heads=4, chunk=4, identity_canvas=True,
                frame_prior=True, head_skip=True, reference_warp=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    write_shards(root / "talking", 6, "talking", seed=0, frames_per_seq=16, shard_size=6, audio="formant")
    write_shards(root / "orbit", 3, "orbit", seed=0, frames_per_seq=16, shard_size=3)
    return root


@pytest.fixture(scope="module")
def world16(tmp_path_factory) -> Path:
    """At the 16x16 size of the `tiny` preset, for whole training runs."""
    root = tmp_path_factory.mktemp("world16")
    write_shards(root / "talking", 4, "talking", seed=0, frames_per_seq=8, size=16, audio="formant")
    write_shards(root / "orbit", 2, "orbit", seed=0, frames_per_seq=8, size=16)
    return root


@pytest.fixture(scope="module")
def sampler(world) -> ClipSampler:
    return ClipSampler(load_sequences(world / "talking", SMALL), load_sequences(world / "orbit", SMALL), SMALL, 8)


def test_reference_portrait_is_jittered_by_the_seed_and_dropped_as_asked(sampler):
    """The training portrait moves a few pixels (seeded), keeps its content, and is switched off
    for the `reference_dropout` share of clips."""
    square = torch.zeros(8, 3, 64, 64)
    square[:, :, 24:40, 24:40] = 1.0

    def centre(img: torch.Tensor) -> torch.Tensor:  # (B, 2) centroid of the bright pixels
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        m = img[:, 0]
        return torch.stack([(m * xs).sum((1, 2)), (m * ys).sum((1, 2))], 1) / m.sum((1, 2))[:, None]

    moved = jitter(square, 0.08, torch.Generator().manual_seed(0))
    assert torch.equal(moved, jitter(square, 0.08, torch.Generator().manual_seed(0)))
    shift = (centre(moved) - centre(square)).norm(dim=1)
    assert shift.max() > 1.0 and shift.max() < 0.08 * 64 * 1.5 + 1, f"shifts {shift}"
    assert (moved.sum((1, 2, 3)) / square.sum((1, 2, 3)) - 1).abs().max() < 0.25, "the zoom is at most 8%"
    torch.testing.assert_close(jitter(square, 0.0, torch.Generator()), square, atol=1e-5, rtol=0)

    model, batch = STARCaster(SMALL), sampler.sample(4, 0.0, torch.Generator().manual_seed(1))
    for dropout, on in ((0.0, True), (1.0, False)):
        ref = reference_condition(model, batch, TrainConfig(reference_dropout=dropout), torch.Generator())
        assert ref["reference"].shape == (4, 3, SMALL.height, SMALL.width) and bool(ref["use_reference"].all()) == on


def test_clips_read_the_sequence_portrait_or_a_frame_as_asked(world):
    """World shards carry each identity's neutral frontal portrait (as the eval draws portraits);
    the sampler hands it out for a `portrait_share` of clips and another frame for the rest."""
    from starcaster_core.synthetic.render import render_frames

    talking = load_sequences(world / "talking", SMALL)
    assert talking.portraits is not None and talking.portraits.shape == (6, 3, 64, 64)
    drawn = render_frames(talking.extra["identity"][2], size=64, batch=1)[0]  # (3, 64, 64) in 0..1
    assert (talking.portraits[2].float() / 255 - drawn).abs().max() < 1 / 255 + 1e-6
    assert not torch.equal(talking.portraits[2], talking.frames[2, 0]), "the portrait is not a frame"

    def sources(share: float, when_turned: bool = False) -> list[str]:
        sampler = ClipSampler(talking, None, SMALL, 8, portrait_share=share, portrait_when_turned=when_turned)
        batch = sampler.sample(8, 0.0, torch.Generator())
        portraits = ((talking.portraits.float() / 127.5 - 1)[:, None] - batch["portrait"][None]).abs()
        frames = ((talking.frames.float() / 127.5 - 1)[:, :, None] - batch["portrait"][None, None]).abs()
        # which clip each portrait is: a sequence's portrait, or one of the frames
        return ["portrait" if bool((portraits.amax((2, 3, 4)) < 1e-5).any(0)[i])
                else "frame" if bool((frames.amax((3, 4, 5)) < 1e-5).flatten(0, 1).any(0)[i]) else "?"
                for i in range(8)]

    assert sources(1.0) == ["portrait"] * 8
    assert sources(0.0) == ["frame"] * 8
    # the same draw, with the frontal portrait for every clip filmed from a turned camera
    batch = ClipSampler(talking, None, SMALL, 8, portrait_share=0.0).sample(8, 0.0, torch.Generator())
    turned = batch["camera"][:, 0, :2].abs().amax(dim=1) > 1.0  # (8,)
    assert 0 < int(turned.sum()) < 8, "the world films some clips from the front, some turned"
    assert sources(0.0, when_turned=True) == ["portrait" if x else "frame" for x in turned.tolist()]
    # ...and each portrait comes with the camera it was filmed from: the front, or the clip's own
    cams = ClipSampler(talking, None, SMALL, 8, portrait_share=0.0, portrait_when_turned=True).sample(
        8, 0.0, torch.Generator())["portrait_camera"]  # (8, 4)
    expected = torch.where(turned[:, None], torch.tensor([0.0, 0.0, 0.0, 1.0]), batch["camera"][:, 0])
    torch.testing.assert_close(cams, expected)

def test_cameras_relative_to_the_head_turn_the_portrait_onto_the_frames_head(world):
    """`pose_in_camera`: the clip's and the portrait's cameras are relative to the data's head
    poses, as `generate` composes the pose prior's turns with the camera; the portrait (another
    frame of the clip) turned to those cameras then lies on each frame's head, where turned by the
    cameras alone it keeps the head as it was in its own frame."""
    from starcaster_core.camera import head_relative, pose_features
    from starcaster_core.view_warp import warp_portrait

    talking = load_sequences(world / "talking", SMALL)
    pose = talking.extra["pose"]
    assert pose.abs().amax() > 1.0, "the world's heads turn"
    batches, errors = [], []
    for relative in (False, True):
        sampler = ClipSampler(talking, None, SMALL, 8, portrait_share=0.0, pose_in_camera=relative)
        batch = sampler.sample(8, 0.0, torch.Generator().manual_seed(0))
        turned = warp_portrait(batch["portrait"], pose_features(batch["portrait_camera"]),
                               pose_features(batch["camera"]))  # (B, C, T, H, W)
        errors.append(float((turned - batch["frames"].transpose(1, 2)).pow(2).mean()))
        batches.append(batch)
    plain, relative = batches  # the same clips, their cameras composed with their head poses
    assert torch.equal(plain["frames"], relative["frames"])
    torch.testing.assert_close(relative["camera"][0], head_relative(plain["camera"][0], plain["pose"][0]))
    assert errors[1] < 0.7 * errors[0], errors


def one_step(loss_now, opt: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of a fixed batch before and after one optimiser step on it."""
    before = loss_now()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        return before, loss_now()


@pytest.mark.parametrize("stage", ["motion", "sync", "views"])
def test_one_step_lowers_the_loss_of_each_stage(sampler, stage):
    torch.manual_seed(0)
    model = STARCaster(SMALL)
    reader = LipReader(SMALL.audio_mels).eval().requires_grad_(False)
    tc = TrainConfig(self_forcing=0.0, clean_context=0.5)
    batch = sampler.sample(4, 0.5 if stage == "views" else 0.0, torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss_now() -> torch.Tensor:  # the same noise and dropout every call: a fixed batch
        return batch_loss(model, batch, tc, stage, torch.Generator().manual_seed(2), reader)[0]

    prior = model.denoiser.prior.weight.clone()
    before, after = one_step(loss_now, opt)
    assert after < before, f"{stage}: loss {before.item():.4f} -> {after.item():.4f}"
    assert torch.equal(model.denoiser.prior.weight, prior), "the fitted frame prior is frozen, not trained"


def test_edge_loss_charges_a_fine_pattern_and_a_blur_not_a_shift_and_joins_the_batch_loss(sampler):
    from kornia.filters import gaussian_blur2d

    from starcaster_core.train.objective import edge_loss

    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(1))
    x0 = batch["frames"].permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 2 - 1).float()  # (H, W) of +-1
    shifted, patterned = x0 + 0.02, x0 + 0.02 * checker  # the same squared error: 0.02^2 per pixel
    blurred = gaussian_blur2d(batch["frames"].flatten(0, 1), (5, 5), (1.5, 1.5)).view_as(batch["frames"])
    assert edge_loss(x0, x0).abs().max() == 0 and edge_loss(shifted, x0).max() < 1e-6
    assert (edge_loss(patterned, x0) > 0.07).all()  # 2 x 0.04 per neighbour pair
    assert (edge_loss(blurred.permute(0, 2, 1, 3, 4), x0) > 0.005).all()

    model = STARCaster(SMALL)
    plain = TrainConfig(self_forcing=0.0)
    loss, parts = batch_loss(model, batch, plain, "motion", torch.Generator().manual_seed(2))
    edged = replace(plain, edge_weight=2.0)
    loss_e, parts_e = batch_loss(model, batch, edged, "motion", torch.Generator().manual_seed(2))
    assert "edge" not in parts and parts_e["edge"] > 0
    assert loss_e.item() == pytest.approx(loss.item() + 2.0 * parts_e["edge"], rel=1e-5)


def test_lip_reader_learns_on_tiny_data(sampler):
    torch.manual_seed(0)
    reader = LipReader(SMALL.audio_mels)
    opt = torch.optim.AdamW(reader.parameters(), lr=3e-3)
    batch = sampler.sample(4, 0.0, torch.Generator().manual_seed(3))
    boxes = batch["mouth_box"].flatten(0, 1) if "mouth_box" in batch else None
    crops = mouth_crops(batch["frames"].flatten(0, 1), boxes)
    audio, opening = batch["audio"].flatten(0, 1), batch["mouth"].flatten(0, 1)
    first = lip_reader_loss(reader, crops, audio, opening).item()
    for _ in range(60):
        loss = lip_reader_loss(reader, crops, audio, opening)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_a_blurred_lip_reader_ignores_patterns_no_mouth_has(sampler):
    """Through its low-pass, the reader's features barely move under a pixel checkerboard that
    moves the same reader's features without it, while a real change of mouth still moves them."""
    torch.manual_seed(0)
    sharp = LipReader(SMALL.audio_mels).eval()
    blurred = LipReader(SMALL.audio_mels, blur=1.0).eval()
    blurred.load_state_dict(sharp.state_dict())
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(3))
    crops = mouth_crops(batch["frames"].flatten(0, 1), None)  # (N, 3, 24, 24): the default box
    ys, xs = torch.meshgrid(torch.arange(crops.shape[-2]), torch.arange(crops.shape[-1]), indexing="ij")
    checker = 0.3 * (1 - 2 * ((ys + xs) % 2)).float()  # (24, 24): +-0.3, the finest pattern there is
    opening = batch["mouth"].flatten(0, 1)
    wide, shut = int(opening.argmax()), int(opening.argmin())
    with torch.no_grad():
        def moved(reader: LipReader, other: torch.Tensor) -> float:
            return float((reader(other)[0] - reader(crops)[0]).abs().mean())

        sharp_moved, blur_moved = moved(sharp, crops + checker), moved(blurred, crops + checker)
        mouth_moved = float((blurred(crops[wide:wide + 1])[0] - blurred(crops[shut:shut + 1])[0]).abs().mean())
    assert blur_moved < 0.05 * sharp_moved, (blur_moved, sharp_moved)
    assert mouth_moved > 10 * blur_moved, (mouth_moved, blur_moved)


def test_a_centred_lip_reader_reads_no_tint_and_asks_for_none(sampler):
    """A centred reader's features do not move when the whole crop turns redder (a plain one's
    do), so the lip-reading loss through it pushes no colour into the crop: its gradient sums
    to 0 over each crop and channel. A change of mouth still moves the features."""
    torch.manual_seed(0)
    plain = LipReader(SMALL.audio_mels).eval()
    centred = LipReader(SMALL.audio_mels, centre=True).eval()
    centred.load_state_dict(plain.state_dict())
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(3))
    crops = mouth_crops(batch["frames"].flatten(0, 1), None)  # (N, 3, 24, 24): the default box
    tint = torch.tensor([0.2, -0.1, 0.0])[None, :, None, None]  # redder, less green
    opening = batch["mouth"].flatten(0, 1)
    wide, shut = int(opening.argmax()), int(opening.argmin())
    with torch.no_grad():
        plain_moved = float((plain(crops + tint)[0] - plain(crops)[0]).abs().mean())
        centred_moved = float((centred(crops + tint)[0] - centred(crops)[0]).abs().mean())
        mouth_moved = float((centred(crops[wide:wide + 1])[0] - centred(crops[shut:shut + 1])[0]).abs().mean())
    assert centred_moved < 0.01 * plain_moved, (centred_moved, plain_moved)
    assert mouth_moved > 0.5 * plain_moved, (mouth_moved, plain_moved)
    pred = crops.roll(1, dims=0).requires_grad_()  # other mouths, to be moved towards these
    lip_feature_loss(centred, pred, crops).backward()
    assert pred.grad.abs().sum() > 0
    torch.testing.assert_close(pred.grad.sum(dim=(2, 3)), torch.zeros(pred.shape[:2]), atol=1e-6, rtol=0)


def test_a_linear_lip_readers_loss_is_least_at_the_mean_of_the_real_mouths(sampler):
    """With a linear reader, the lip-reading loss over several real frames (what a noisy input
    leaves open) is least at their mean, as the flow loss is: no added pattern lowers it."""
    torch.manual_seed(0)
    reader = LipReader(SMALL.audio_mels, kind="linear").eval()
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(3))
    crops = mouth_crops(batch["frames"].flatten(0, 1), None)[:6]  # (6, 3, 24, 24): six real mouths
    mean = crops.mean(0, keepdim=True)

    def total(pred: torch.Tensor) -> float:
        return sum(float(lip_feature_loss(reader, pred, real[None])) for real in crops)

    with torch.no_grad():
        at_mean = total(mean)
        g = torch.Generator().manual_seed(4)
        for _ in range(20):
            assert total(mean + 0.2 * torch.randn(mean.shape, generator=g)) > at_mean
        a, b = crops[:1], crops[1:2]  # and its features are linear in the pixels
        f = lambda x: reader(x)[0]  # noqa: E731
        assert torch.allclose(f(a + b) - f(b), f(a) - f(torch.zeros_like(a)), atol=1e-4)


def test_adversarial_crops_stay_within_the_radius_and_read_worse(sampler):
    """The crops a robust lip reader trains on: each moved by at most the radius (L2), and
    together read worse than the real ones, far worse than after a random move of that size."""
    torch.manual_seed(0)
    reader = LipReader(SMALL.audio_mels)
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(3))
    crops = mouth_crops(batch["frames"].flatten(0, 1), None)  # (N, 3, 24, 24)
    audio, opening = batch["audio"].flatten(0, 1), batch["mouth"].flatten(0, 1)
    moved = adversarial_crops(reader, crops, audio, opening, radius=0.5)
    assert not moved.requires_grad
    assert float((moved - crops).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-4
    noise = torch.randn(crops.shape, generator=torch.Generator().manual_seed(5))
    noise = noise * 0.5 / noise.flatten(1).norm(dim=1)[:, None, None, None]
    with torch.no_grad():
        clean, worst, rand = (float(lip_reader_loss(reader, c, audio, opening)) for c in (crops, moved, crops + noise))
    assert worst > clean and worst - clean > 5 * abs(rand - clean), (clean, worst, rand)


def test_lip_reader_is_seeded_and_one_whose_features_collapse_is_refused(world):
    from starcaster_core.train.trainer import train_lip_reader

    tc = TrainConfig(lip_reader_steps=3, batch=2)
    sampler = ClipSampler(load_sequences(world / "talking", SMALL), None, SMALL, 8)
    readers = []
    for state in (1, 2):  # whatever ran before (the global RNG), the same reader comes out
        torch.manual_seed(state)
        readers.append(train_lip_reader(sampler, tc, torch.device("cpu")).state_dict())
    assert all(torch.equal(readers[0][k], readers[1][k]) for k in readers[0])
    robust = train_lip_reader(sampler, replace(tc, lip_reader_robust=0.5), torch.device("cpu")).state_dict()
    assert not torch.equal(robust["speech.weight"], readers[0]["speech.weight"])  # it trained on other crops

    still = load_sequences(world / "talking", SMALL)
    still.frames.zero_()  # every mouth crop the same: features that cannot tell mouths apart
    with pytest.raises(RuntimeError, match="collapsed in 2 attempts"):
        train_lip_reader(ClipSampler(still, None, SMALL, 8), tc, torch.device("cpu"), attempts=2)


def test_mouth_weight_map_moves_the_loss_to_the_mouth_and_keeps_its_size():
    weight = mouth_weight_map(None, (2, 3, 64, 64), extra=4.0)  # (B, T, H, W)
    assert torch.allclose(weight.mean(dim=(2, 3)), torch.ones(2, 3))
    cx, cy = DEFAULT_BOX[0], DEFAULT_BOX[1]
    mouth, corner = weight[0, 0, round(cy * 63), round(cx * 63)], weight[0, 0, 0, 0]
    assert torch.isclose(mouth / corner, torch.tensor(5.0)), "inside the box: 1 + extra times the rest"
    moved = torch.tensor([[0.5, 0.3, 0.2, 0.2]]).expand(3, 4)[None]  # a box elsewhere, (1, T, 4)
    elsewhere_map = mouth_weight_map(moved, (1, 3, 64, 64), 4.0)  # (1, T, H, W)
    assert elsewhere_map[0, 0, 19, 31] > 1 > elsewhere_map[0, 0, 40, 31], "the weights follow each frame's box"

    x0 = torch.zeros(2, 3, 3, 64, 64)  # (B, C, T, H, W)
    t = torch.full((2, 3), 0.5)
    in_mouth, elsewhere = x0.clone(), x0.clone()
    in_mouth[..., 34:38, 28:36] = 1.0  # an error at the mouth...
    elsewhere[..., 2:6, 28:36] = 1.0  # ...and the same error on the forehead
    plain = velocity_loss(in_mouth, x0, t)
    assert torch.allclose(plain, velocity_loss(elsewhere, x0, t))
    assert (velocity_loss(in_mouth, x0, t, pixel_weight=weight) > 2 * plain).all()
    assert (velocity_loss(elsewhere, x0, t, pixel_weight=weight) < plain).all()


def tiny_run(world: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(preset="tiny", data=str(world), out=str(out), motion_steps=2, sync_steps=2, views_steps=2,
                       lip_reader_steps=2, batch=2, clip_frames=4, log_every=1, checkpoint_every=2, precision="fp32",
                       **{"pose_steps": 0, **kw})


def test_the_lip_reader_reads_the_datas_mouth_boxes_unless_told_not_to(world16, tmp_path):
    from safetensors.torch import load_file

    from starcaster_core.train.trainer import train

    readers = []
    for boxes in (1, 0, 1):
        out = tmp_path / f"run{len(readers)}"
        train(tiny_run(world16, out, mouth_boxes=boxes, until="motion"))
        readers.append(load_file(str(out / "lip_reader.safetensors")))
    differ = [not torch.equal(readers[0][k], readers[1][k]) for k in readers[0]]
    assert any(differ), "the fixed box crops other pixels than the data's boxes"
    assert all(torch.equal(readers[0][k], readers[2][k]) for k in readers[0])  # and it is not chance


def test_stages_resume_and_write_logs(world16, tmp_path):
    from starcaster_core.train.trainer import train

    tc = tiny_run(world16, tmp_path, model='{"context_frames": 2}')  # a preset field changed from the command line
    train(replace(tc, until="motion"))
    assert (tmp_path / "motion.safetensors").is_file()
    train(tc)  # resumes at step 2 and runs sync + views
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4, 5]
    assert (tmp_path / "loss.png").stat().st_size > 1000
    # no head-pose prior steps (tiny_run): the untrained prior is dropped, and the config says so
    assert load_checkpoint(tmp_path / "views.safetensors").config == replace(PRESETS["tiny"], pose_prior=0,
                                                                             context_frames=2)


def test_a_warping_model_trained_on_portraits_from_the_clips_camera_trains_as_one_without_the_warp(world16, tmp_path):
    """The demo recipe's portraits are other frames of the clip (`portrait_share=0`), filmed
    from the clip's own (static) camera, so the warp is the identity there, exactly: the same
    weights come out of stages 1 and 2 with and without `reference_warp` (self-forcing
    rollouts included), and the warp only acts where a portrait's camera differs, as at
    inference with a frontal portrait and a turned camera."""
    from starcaster_core.train.trainer import train

    weights = []
    for model in ('{"reference_warp": true}', '{"reference_warp": false}'):
        out = tmp_path / str(len(weights))
        train(tiny_run(world16, out, model=model, portrait_share=0.0, self_forcing=1.0, until="sync"))
        loaded = load_checkpoint(out / "sync.safetensors")
        assert loaded.config.reference_warp == (len(weights) == 0)
        weights.append(loaded.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_command_line_changes_preset_fields_and_refuses_unknown_ones():
    from starcaster_core.train.__main__ import parse

    assert parse(["--model", '{"reference_warp": false, "pose_prior": 0}']).model_config() == replace(
        PRESETS["demo"], reference_warp=False, pose_prior=0)
    assert parse([]).model_config() == PRESETS["demo"]
    for bad in ('{"warp": true}', '[1, 2]'):
        with pytest.raises(ValueError, match="JSON object of ModelConfig fields"):
            parse(["--model", bad]).model_config()


def test_the_demo_recipe_ends_annealed_and_a_run_stopping_before_its_schedule_ends_is_told(world16, tmp_path, caplog):
    from starcaster_core.train.demo import demo_config
    from starcaster_core.train.trainer import lr_at, train

    tc = demo_config("data/world", "runs/demo")
    last = tc.stage_end(tc.until) - 1
    assert lr_at(last, tc) == pytest.approx(tc.lr * tc.min_lr_ratio, rel=1e-3)  # annealed at its last step
    with caplog.at_level("WARNING", logger="starcaster_core.train.trainer"):
        train(replace(tiny_run(world16, tmp_path / "all"), warmup=1))
        assert "not annealed" not in caplog.text
        train(replace(tiny_run(world16, tmp_path / "early"), warmup=1, until="motion"))
    assert "stops at step 2" in caplog.text and "not annealed" in caplog.text


def test_a_run_ends_by_training_the_head_pose_prior_on_the_datas_poses(world16, tmp_path):
    from starcaster_core.train.trainer import train

    train(tiny_run(world16, tmp_path, pose_steps=4, until="motion"))
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["motion"] * 2 + ["pose"] * 4 and rows[-1]["step"] == 5
    final = load_checkpoint(tmp_path / "motion.safetensors").state_dict()
    last = load_checkpoint(tmp_path / "last.safetensors").state_dict()  # saved before the prior trained
    prior = [k for k in final if k.startswith("pose_prior.")]
    assert prior and not all(torch.equal(final[k], last[k]) for k in prior), "the prior trained"
    assert all(torch.equal(final[k], last[k]) for k in final if k not in prior), "nothing else did"


def test_a_step_of_the_mouth_stage_lowers_its_loss_and_moves_the_branch_alone(sampler):
    from starcaster_core.train.mouth_stage import mouth_stage_loss

    torch.manual_seed(0)
    model = STARCaster(replace(SMALL, mouth_branch=8))
    batch = sampler.sample(4, 0.0, torch.Generator().manual_seed(1))
    tc = TrainConfig(clean_context=0.5)

    def loss_now() -> torch.Tensor:  # the same noise and dropout every call: a fixed batch
        return mouth_stage_loss(model, batch, tc, torch.Generator().manual_seed(2))

    before_weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.requires_grad_(False)
    model.denoiser.mouth.requires_grad_(True)
    opt = torch.optim.Adam(model.denoiser.mouth.parameters(), lr=1e-3)
    before, after = one_step(loss_now, opt)
    assert after < before, f"mouth stage: loss {before.item():.5f} -> {after.item():.5f}"
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before_weights[k])}
    assert moved and all(k.startswith("denoiser.mouth.") for k in moved), sorted(moved)


@pytest.mark.parametrize("forcing", ["self_forcing", "sampler_forcing"])
def test_a_no_grad_pass_before_the_loss_leaves_every_weight_its_gradient_under_bf16_autocast(sampler, forcing):
    """Autocast caches the bf16 copies of the weights it casts for the whole region; copies cast in
    the no-grad rollout carried no graph, and the loss pass reused them: until session 21 every
    linear and conv weight got no gradient in a step with a rollout."""
    torch.manual_seed(0)
    model = STARCaster(SMALL)
    with torch.no_grad():  # off the zero inits, so that every weight's gradient is nonzero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(1))

    def trained(share: float) -> set[str]:
        model.zero_grad(set_to_none=True)
        tc = replace(TrainConfig(self_forcing=0.0, clean_context=0.0), **{forcing: share})
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = batch_loss(model, batch, tc, "sync", torch.Generator().manual_seed(2))[0]
        loss.backward()
        return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}

    plain, forced = trained(0.0), trained(1.0)
    assert any(n.startswith("denoiser.blocks.") and n.endswith(".weight") for n in plain), sorted(plain)
    assert plain <= forced, f"{forcing} left weights without a gradient: {sorted(plain - forced)[:6]}"


def test_sampler_forcing_noises_the_chosen_targets_from_the_models_own_first_estimate(sampler):
    """The chosen frames become the sampler's Euler step from t = 1 (x_t = t e + (1 - t) x0_hat,
    with x0_hat the model's estimate from that same noise e); context and other clips' frames stay."""
    from starcaster_core.camera import pose_features
    from starcaster_core.conditioning import Conditioning
    from starcaster_core.flow import add_noise
    from starcaster_core.train.objective import sampler_forced

    torch.manual_seed(0)
    model = STARCaster(SMALL).eval()
    batch = sampler.sample(2, 0.0, torch.Generator().manual_seed(1))
    x0 = batch["frames"].permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
    b, n = x0.shape[0], x0.shape[2]
    on = torch.ones(b, dtype=torch.bool)
    cond = Conditioning(identity=batch["identity"], audio=batch["audio"], camera=pose_features(batch["camera"]),
                        motion=torch.ones(b, n), audio_strength=torch.ones(b), use_audio=on, use_identity=on,
                        reference=batch["portrait"], reference_camera=pose_features(batch["portrait_camera"]))
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0.02] * 4 + [0.5] * 4).repeat(b, 1)  # (B, T): a clean context chunk, a target chunk
    x_t = add_noise(x0, noise, t)
    own = (t > 0.1) & torch.tensor([True, False])[:, None]  # clip 0's targets only
    forced = sampler_forced(model, x_t, noise, t, own, cond)
    assert torch.equal(forced[1], x_t[1]) and torch.equal(forced[0, :, :4], x_t[0, :, :4]), "the rest is untouched"
    with torch.no_grad():  # by hand: clip 0's targets from pure noise, its context as it was
        first = model.denoiser(torch.cat([x_t[:1, :, :4], noise[:1, :, 4:]], dim=2),
                               torch.tensor([[0.02] * 4 + [1.0] * 4]), cond.select(torch.tensor([0])), block=4)
    expected = add_noise(first, noise[:1], t[:1])[:, :, 4:]
    assert torch.allclose(forced[0, :, 4:], expected[0], atol=1e-5)
    assert (forced[0, :, 4:] - x_t[0, :, 4:]).abs().mean() > 0.05, "an untrained estimate is far from the frames"


def test_a_run_ends_with_the_mouth_stage_training_the_branch_the_stages_left_alone(world16, tmp_path):
    from starcaster_core.train.trainer import train

    train(tiny_run(world16, tmp_path, mouth_steps=3, until="motion"))  # the tiny preset has a mouth branch
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["motion"] * 2 + ["mouth"] * 3 and rows[-1]["step"] == 4
    final = load_checkpoint(tmp_path / "motion.safetensors").state_dict()
    last = load_checkpoint(tmp_path / "last.safetensors").state_dict()  # saved before the mouth stage
    branch = [k for k in final if k.startswith("denoiser.mouth.")]
    assert not last["denoiser.mouth.conv.3.weight"].any(), "the stages left the branch as it started: adding nothing"
    assert not all(torch.equal(final[k], last[k]) for k in branch), "the mouth stage trained it"
    assert all(torch.equal(final[k], last[k]) for k in final if k not in branch), "and nothing else"


@pytest.mark.parametrize("decay", [1e-9, 0.9])
def test_ema_weights_are_the_saved_model_and_resume(world16, tmp_path, decay):
    from safetensors import safe_open

    from starcaster_core.train.trainer import train

    tc = tiny_run(world16, tmp_path, ema=decay, mouth_weight=4.0)
    train(replace(tc, until="motion"))
    with safe_open(str(tmp_path / "state.safetensors"), framework="pt") as f:
        assert any(k.startswith("ema.") for k in f.keys()), "the average is part of the resume state"
    train(tc)
    final = load_checkpoint(tmp_path / "views.safetensors").state_dict()
    last = load_checkpoint(tmp_path / "last.safetensors").state_dict()  # the raw weights of the last step
    same = all(torch.allclose(final[k], last[k], atol=1e-6) for k in final)
    assert same == (decay < 1e-6), "decay ~0 saves the last weights, decay 0.9 an average that lags them"


def test_ema_switched_on_when_resuming_a_run_saved_without_it(world16, tmp_path):
    from starcaster_core.train.trainer import train

    tc = tiny_run(world16, tmp_path)
    train(replace(tc, until="motion"))  # no average in this resume state
    train(replace(tc, ema=0.9))  # resumes, and averages from the next step on
    final = load_checkpoint(tmp_path / "views.safetensors").state_dict()
    last = load_checkpoint(tmp_path / "last.safetensors").state_dict()
    assert not all(torch.allclose(final[k], last[k], atol=1e-6) for k in final)


def test_torchrun_two_processes_end_with_identical_weights(world16, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "starcaster_core.train", "--preset", "tiny", "--data", str(world16), "--motion-steps", "2",
           "--sync-steps", "1", "--views-steps", "1", "--lip-reader-steps", "2", "--batch", "2", "--clip-frames", "4",
           "--precision", "fp32", "--threads", "1", "--save-every-rank", "1", "--pose-steps", "3",
           "--out", str(tmp_path / "ddp")]
    out = subprocess.run(cmd, env=env, capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    a = load_checkpoint(tmp_path / "ddp" / "views.rank0.safetensors").state_dict()
    b = load_checkpoint(tmp_path / "ddp" / "views.rank1.safetensors").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = STARCaster(PRESETS["tiny"]).state_dict()
    assert not all(torch.equal(a[k], fresh[k]) for k in a if "identity_" not in k), "the weights did not train"


@torch.no_grad()
@pytest.mark.parametrize("window", [None, 2])
def test_self_forcing_rollout_is_the_autoregressive_sampler(window):
    """The context self-forcing trains on is what the AR sampler generates: same noise, same
    steps, chunk after chunk on the model's own earlier chunks (the rollout caches them, this
    reference recomputes them), over the whole past or a window of it, as at inference."""
    from core_helpers import TINY, tiny_cond, tiny_model

    from starcaster_core.flow import timesteps
    from starcaster_core.sampler import sample_video
    from starcaster_core.train.objective import rollout

    model, cond = tiny_model(), tiny_cond(8, batch=2)
    own = rollout(model, cond, 8, 3, torch.Generator().manual_seed(5), window)
    ar = sample_video(model.denoiser, cond, timesteps(3), generator=torch.Generator().manual_seed(5),
                      chunk=TINY.chunk, context=window, use_cache=False)
    assert own.shape == (2, TINY.channels, 8, TINY.height, TINY.width)
    torch.testing.assert_close(own, ar, atol=1e-5, rtol=0)
    assert own.std() > 0.05  # a real video, not a constant
    if window is not None:  # the window matters: the whole past makes another video
        whole = rollout(model, cond, 8, 3, torch.Generator().manual_seed(5))
        assert (whole[:, :, -TINY.chunk:] - own[:, :, -TINY.chunk:]).abs().max() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("train_window", [0, 1])
def test_train_window_keeps_the_last_chunk_from_frames_the_sampler_would_have_let_go(world, train_window):
    """With `train_window` every training pass attends back `context_frames` frames, as the
    sampler's KV window does: 2 layers x 4 frames back from the last chunk (frames 12-15) reach
    frame 4, so frames 0-3 change its estimate only when the pass sees the whole clip."""
    cfg = replace(SMALL, context_frames=4)
    clips = ClipSampler(load_sequences(world / "talking", cfg), None, cfg, 16)
    torch.manual_seed(0)
    model = STARCaster(cfg).eval()
    for w in model.parameters():  # the output layers start at zero: an untrained model draws nothing
        w.add_(0.05 * torch.randn_like(w))
    tc = TrainConfig(self_forcing=0.0, clean_context=0.0, train_window=train_window)
    batch = clips.sample(2, 0.0, torch.Generator().manual_seed(1))
    changed = dict(batch, frames=batch["frames"].clone())
    changed["frames"][:, :4] = -changed["frames"][:, :4]  # frames 0-3 (B, T, C, H, W) turned negative
    estimates = []
    hook = model.denoiser.register_forward_hook(lambda mod, args, out: estimates.append(out))
    for b in (batch, changed):
        batch_loss(model, b, tc, "sync", torch.Generator().manual_seed(2))
    hook.remove()
    first, second = estimates  # each (B, C, T, H, W)
    assert (first[:, :, :4] - second[:, :, :4]).abs().max() > 1e-3  # the changed frames' own estimates
    last = (first[:, :, 12:] - second[:, :, 12:]).abs().max().item()
    if train_window:
        assert last < 1e-5, f"the last chunk read frames outside its window ({last})"
    else:
        assert last > 1e-3, f"the last chunk did not read the whole clip ({last})"


@torch.no_grad()
def test_probe_scores_an_untrained_model_at_zero_and_the_fitted_prior_beats_the_mean(sampler):
    from starcaster_core.eval.probe import denoising_errors

    torch.manual_seed(0)
    denoiser = STARCaster(SMALL).denoiser.eval()  # adaLN-Zero and a zero prior: predicts x0 = 0
    batch = sampler.sample(6, 0.0, torch.Generator().manual_seed(3))
    x0 = batch["frames"].transpose(1, 2)  # (B, C, T, H, W)
    before = denoising_errors(denoiser, batch)
    first = x0[:, :, : SMALL.chunk].pow(2).mean().item()
    assert before["first chunk, t=1"] == pytest.approx(first, rel=1e-5)
    assert before["identity on vs off at t=1 (output change)"] == 0.0
    n = x0.shape[2]
    held = (x0[:, :, n - SMALL.chunk :] - x0[:, :, n - SMALL.chunk - 1 : n - SMALL.chunk]).pow(2).mean().item()
    assert before["last chunk: copying the last context frame"] == pytest.approx(held, rel=1e-5)
    assert 0 < held < before["mean frame (no conditioning)"]  # world clips change little from frame to frame

    mse = denoiser.fit_prior(sampler.prior_pairs(every=1))
    after = denoising_errors(denoiser, batch)
    assert mse < 0.5 * before["mean frame (no conditioning)"], mse
    assert after["first chunk, t=1"] < 0.5 * before["mean frame (no conditioning)"], after
    assert after["identity on vs off at t=1 (output change)"] > 0.01, after


@torch.no_grad()
def test_teacher_forced_lip_sync_reads_the_last_chunk_with_the_audio_on_and_off(sampler):
    from starcaster_core.eval.meters import load_meters
    from starcaster_core.eval.probe import teacher_forced_lipsync

    batch = sampler.sample(4, 0.0, torch.Generator().manual_seed(3))
    x0 = batch["frames"].transpose(1, 2)  # (B, C, T, H, W)
    meters = load_meters()

    class HearsOnlyWithAudio(torch.nn.Module):  # draws the real frames with the audio, their mean face without
        config = SMALL

        def forward(self, x, t, cond):
            mean = x0.mean(dim=(0, 2), keepdim=True).expand_as(x0)
            return torch.where(cond.use_audio[:, None, None, None, None], x0, mean)

    scores = teacher_forced_lipsync(HearsOnlyWithAudio(), batch, meters)
    assert len(scores) == 8  # the 4 levels of the grid x audio on / off
    for name, r in scores.items():
        assert r == (pytest.approx(1.0) if "audio on" in name else 0.0), (name, r)
    untrained = teacher_forced_lipsync(STARCaster(SMALL).denoiser.eval(), batch, meters)  # draws x0 = 0
    assert set(untrained.values()) == {0.0}


def test_validation_rows_score_held_out_clips_during_training(world16, tmp_path):
    from starcaster_core.eval.inputs import HELDOUT_SEED, VALIDATION_SEED, heldout_clips
    from starcaster_core.train.trainer import train

    train(tiny_run(world16, tmp_path, val_every=4, val_clips=1, val_seconds=0.4))
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_lipsync_r" in r]
    assert [r["step"] for r in val] == [3, 5], "every val_every steps and at the end"
    for r in val:
        assert -1 <= r["val_lipsync_r"] <= 1 and r["val_view_error_deg"] >= 0 and r["val_fidelity_fd"] > 0
    scores = [{k: v for k, v in r.items() if k.startswith("val_")} for r in val]
    assert scores[0] != scores[1], "the model changed between the two validations"
    test_clip, val_clip = heldout_clips(1, 0.4)[0], heldout_clips(1, 0.4, first_seed=VALIDATION_SEED)[0]
    assert VALIDATION_SEED != HELDOUT_SEED and not (test_clip.wave == val_clip.wave).all()
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_validation_turns_the_head_as_the_world_does_in_place_of_the_prior_that_trains_after_the_stages():
    """A model with an untrained (random) head-pose prior is scored with the world's own head turns
    for each clip's speech in its place, so another random prior scores the same, no prior (no
    turns, as at inference) scores otherwise, and the model keeps its prior afterwards. The turns
    are the very track the world renders for that speech from the same generator."""
    from core_helpers import tiny_model

    from starcaster_core.audio import audio_features
    from starcaster_core.eval.inputs import VALIDATION_SEED, heldout_clips
    from starcaster_core.synthetic.identity import sample_identity
    from starcaster_core.synthetic.motion import head_motion
    from starcaster_core.synthetic.sequences import talking_sequence
    from starcaster_core.synthetic.speech import to_mono_16k
    from starcaster_core.train.validate import Validator, WorldTurns

    model = tiny_model()  # every weight random: the frames depend on the camera the turns move
    assert model.pose_prior is not None
    prior = model.pose_prior
    validator = Validator(1, 0.4, torch.device("cpu"), model.config)
    with_prior = validator(model)
    assert model.pose_prior is prior, "the prior is put back"
    other = copy.deepcopy(prior)
    with torch.no_grad():
        for w in other.parameters():
            w.normal_()
    model.pose_prior = other  # another untrained prior: the same turns stand in for it
    assert validator(model) == with_prior
    model.pose_prior = None
    assert validator(model) != with_prior, "no prior: no turns, as at inference"

    clip = heldout_clips(1, 2.0, first_seed=VALIDATION_SEED)[0]
    feats = audio_features(clip.wave, clip.sample_rate, 25.0, model.config).features  # (T, K, M)
    turns = WorldTurns(clip, 25.0).sample(feats, torch.Generator().manual_seed(3))
    world = talking_sequence(sample_identity(0), to_mono_16k(clip.wave, clip.sample_rate), 25.0, size=16)
    assert turns.shape == (feats.shape[0], 3) == world["pose"].shape
    assert torch.equal(turns, head_motion(world["mouth"], 25.0, torch.Generator().manual_seed(3)))
    spread, world_spread = turns.std(dim=0), world["pose"].std(dim=0)  # (3,) degrees
    assert spread.max() > 0.5 and ((spread / world_spread).log().abs() < math.log(3)).all(), (spread, world_spread)
    with pytest.raises(AssertionError, match="feature frames"):
        WorldTurns(clip, 25.0).sample(feats[:-1], torch.Generator())


@pytest.mark.parametrize("context_noise", [0.0, 0.15])
def test_context_chunks_train_at_the_levels_the_sampler_keeps_its_context_at(context_noise):
    from starcaster_core.train.objective import chunk_times

    t, context = chunk_times(256, 4, 4, 1.0, torch.Generator().manual_seed(0), 0.75, context_noise)
    assert t.shape == context.shape == (256, 16) and context.any() and (~context).any()
    levels = t[context]
    top = 2 * context_noise if context_noise else 0.03
    assert levels.max() <= top and levels.min() >= 0
    assert levels.mean() > 0.4 * top, "levels spread over [0, top], not piled at 0"
    assert (t[~context] > top).float().mean() > 0.5, "targets stay noisy"


def test_keep_best_saves_the_validated_weights_that_scored_best_in_the_last_stage(world16, tmp_path):
    from safetensors import safe_open

    from starcaster_core.train.trainer import train

    with pytest.raises(AssertionError, match="keep_best"):
        tiny_run(world16, tmp_path, keep_best="lipsync_r")  # no validation, nothing to keep
    with pytest.raises(AssertionError, match="keep_best"):
        tiny_run(world16, tmp_path, val_every=1, keep_best="loss")
    train(tiny_run(world16, tmp_path, val_every=1, val_clips=1, val_seconds=0.4, keep_best="view_error_deg"))
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    last_stage = [r for r in rows if "val_view_error_deg" in r and r["stage"] == "views"]
    assert [r["step"] for r in last_stage] == [4, 5]
    best = min(last_stage, key=lambda r: r["val_view_error_deg"])
    with safe_open(str(tmp_path / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert float(meta["val_view_error_deg"]) == best["val_view_error_deg"] and meta["steps"] == str(best["step"] + 1)
    if best["step"] == 5:  # the last validation won: best and final hold the same weights
        final = load_checkpoint(tmp_path / "views.safetensors").state_dict()
        kept = load_checkpoint(tmp_path / "best.safetensors").state_dict()
        assert all(torch.equal(final[k], kept[k]) for k in final)


def test_validation_refuses_latent_models_before_training():
    from starcaster_core.train.validate import Validator

    with pytest.raises(ValueError, match="val-every 0"):
        Validator(1, 0.4, torch.device("cpu"), PRESETS["base"])
