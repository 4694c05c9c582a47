"""The embedded default model: it loads, and it lip-syncs on a clip it never saw."""

from __future__ import annotations

import pytest
import torch

from starcaster_core.audio import audio_features
from starcaster_core.config import PRESETS
from starcaster_core.default import DEFAULT_WEIGHTS, default_model
from starcaster_core.eval.evaluate import conditioning_identity, generate_frames
from starcaster_core.eval.inputs import heldout_clips
from starcaster_core.eval.meters import load_meters
from starcaster_core.eval.metrics import hold_colour, identity_distance, lipsync_r, shuffle_blocks
from starcaster_core.generate import GenerateSettings, SpeechConditioning
from starcaster_core.synthetic.lipsync import mouth_from_audio

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no trained default model shipped")


def test_shipped_model_lip_syncs_on_unseen_audio_and_identity():
    """Measured with each frame's mean colour held (`lipsync_r_no_tint`): session 15's model
    passed the plain measure here on a tint of the whole frame alone (0.000 with the colour held)."""
    model, meters = default_model(), load_meters()
    clip = heldout_clips(1, 4.0)[0]  # held-out identity and speech, static camera
    feats = audio_features(clip.wave, clip.sample_rate, model.config.fps, model.config)
    speech = SpeechConditioning(feats, conditioning_identity(model, meters, clip))
    frames = generate_frames(model, speech, None, GenerateSettings(seed=0), torch.device("cpu"))  # (T, 3, H, W)
    assert frames.shape == (feats.n_frames, 3, *model.config.pixel_size)
    measured = meters.measure(hold_colour(frames)).mouth
    truth = torch.as_tensor(mouth_from_audio(clip.wave, clip.sample_rate, model.config.fps)["mouth"]).float()
    r = lipsync_r(measured, truth)
    shuffled = lipsync_r(measured, shuffle_blocks(truth, 5, torch.Generator().manual_seed(0)))
    # measured for the shipped model: see README "Status" (the 0.85 target is not reached yet)
    assert r > 0.2 and r - shuffled > 0.25, f"lip-sync r {r:.3f} vs shuffled audio {shuffled:.3f}"


def test_shipped_model_draws_the_person_of_the_portrait():
    """Each of 4 held-out people, drawn from their portrait, reads (to the identity meter) as
    themselves more than as the other three: the model of sessions 2-7 drew one face for all."""
    model, meters = default_model(), load_meters()
    clips = heldout_clips(4, 1.0)
    measured = []
    for clip in clips:
        feats = audio_features(clip.wave, clip.sample_rate, model.config.fps, model.config)
        speech = SpeechConditioning(feats, conditioning_identity(model, meters, clip))
        frames = generate_frames(model, speech, None, GenerateSettings(seed=0), torch.device("cpu"))
        measured.append(meters.measure(frames).identity)  # (T, D)
    truth = [clip.identity.world.identity_vector() for clip in clips]
    for i, m in enumerate(measured):
        own = identity_distance(m, truth[i])
        others = [identity_distance(m, truth[j]) for j in range(len(clips)) if j != i]
        assert own < min(others), f"clip {i}: distance to its own identity {own:.3f}, to the others {others}"


def test_shipped_model_turns_the_face_to_the_camera():
    """A fixed camera to the left, right, above and below: the frames show those views. The
    session 10 model drew the same frontal face for every camera (measured view within 0.2 deg);
    since session 14 it reads its portrait turned to the camera (README, Status)."""
    model, meters = default_model(), load_meters()
    clip = heldout_clips(1, 1.0)[0]
    feats = audio_features(clip.wave, clip.sample_rate, model.config.fps, model.config)
    speech = SpeechConditioning(feats, conditioning_identity(model, meters, clip), motion=0.0)  # a still head
    views = {}
    for yaw, pitch in ((-20.0, 0.0), (20.0, 0.0), (0.0, -10.0), (0.0, 10.0)):
        camera = torch.tensor([[yaw, pitch, 0.0, 1.0]]).repeat(feats.n_frames, 1)  # (T, 4)
        frames = generate_frames(model, speech, camera, GenerateSettings(seed=0), torch.device("cpu"))
        views[yaw, pitch] = meters.measure(frames).view[:, :2].mean(dim=0)  # (2,) measured yaw, pitch
    turned_yaw = float(views[20.0, 0.0][0] - views[-20.0, 0.0][0])
    turned_pitch = float(views[0.0, 10.0][1] - views[0.0, -10.0][1])
    got = f"asked for 40 deg of yaw and 20 of pitch, got {turned_yaw:.1f} and {turned_pitch:.1f}"
    assert turned_yaw > 20.0 and turned_pitch > 8.0, got


def test_the_demo_recipe_is_the_one_the_shipped_model_was_trained_with():
    """`python -m starcaster_core.train.demo` makes the shipped weights: every training setting
    the file records (all but where its data and run went) is the recipe's; settings added since
    are at values that train as the shipped run did (the fixed mouth box); and its model is the
    `demo` preset."""
    import dataclasses
    import json

    from safetensors import safe_open

    from starcaster_core.train.demo import demo_config

    with safe_open(str(DEFAULT_WEIGHTS), framework="pt") as f:
        shipped = json.loads(f.metadata()["train_config"])
    recipe = dataclasses.asdict(demo_config("data/world", "runs/demo"))
    where = ("data", "out", "threads")
    differ = {k: (v, recipe.get(k)) for k, v in shipped.items() if k not in where and recipe.get(k) != v}
    assert not differ, f"the demo recipe drifted from the shipped model's: {differ}"
    assert recipe["mouth_boxes"] == 0 and recipe["model"] == "" and recipe["lip_reader_robust"] == 0
    assert recipe["pose_in_camera"] == 0 and recipe["mouth_steps"] == 0  # session 20's options, not in the recipe
    assert default_model().config == PRESETS["demo"]
