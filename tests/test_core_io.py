"""Checkpoints, identities and audio features of the core, and its independence from ComfyUI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from core_helpers import TINY, tiny_cond, tiny_model, tiny_video
from safetensors.torch import save_file

from starcaster_core.audio import AudioError, audio_features
from starcaster_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from starcaster_core.config import PRESETS, ModelConfig
from starcaster_core.identity import (
    IdentityError,
    check_space,
    encode_portrait,
    load_identity,
    mix,
    random_identity,
    save_identity,
)

ROOT = Path(__file__).resolve().parents[1]


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    loaded = load_checkpoint(path)
    assert loaded.config == TINY
    x, cond, t = tiny_video(4), tiny_cond(4), torch.full((1, 4), 0.3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoiser(x, t, cond), model.denoiser(x, t, cond), atol=0, rtol=0)


def test_checkpoint_rejects_foreign_truncated_and_mismatched(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a STARCaster checkpoint"):
        load_checkpoint(foreign)
    good = tmp_path / "good.safetensors"
    save_checkpoint(tiny_model(), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(truncated)
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(CheckpointError, match="only .safetensors"):
        load_checkpoint(pickle)
    mismatched = tmp_path / "mismatched.safetensors"
    bigger = ModelConfig(**{**TINY.__dict__, "dim": 128})
    save_checkpoint(tiny_model(), mismatched)
    from safetensors import safe_open

    with safe_open(str(mismatched), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(mismatched), metadata={"format": "starcaster", "format_version": "1",
                                                  "config": bigger.to_json()})
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_checkpoint(mismatched)


def test_presets_round_trip_json():
    for cfg in PRESETS.values():
        assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_identity_ops(tmp_path):
    model = tiny_model()
    portrait = torch.rand(80, 60, 3, generator=torch.Generator().manual_seed(0))
    a = encode_portrait(model, portrait, "center")
    b = random_identity(model, 3)
    assert torch.equal(b.embedding, random_identity(model, 3).embedding)
    m = mix(a, b, 0.25)
    assert torch.allclose(mix(a, b, 0.0).embedding, a.embedding, atol=1e-5)
    assert torch.allclose(mix(a, b, 1.0).embedding, b.embedding, atol=1e-5)
    save_identity(m, tmp_path / "m.safetensors")
    back = load_identity(tmp_path / "m.safetensors")
    assert torch.equal(check_space(back, model), m.embedding)
    with pytest.raises(IdentityError, match="another STARCaster model"):
        check_space(back, tiny_model(seed=1))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(IdentityError, match="not a readable identity file"):
        load_identity(tmp_path / "bad.safetensors")
    with pytest.raises(IdentityError, match="at least 64x64"):
        encode_portrait(model, torch.zeros(16, 16, 3), "center")


def test_identity_from_a_portrait_keeps_it_for_reference_frame_models(tmp_path):
    """The portrait travels with the identity (at the model's frame size) through save and
    load; a mix or a random draw has none, and a model without the input keeps none."""
    model = tiny_model()
    portrait = torch.rand(80, 60, 3, generator=torch.Generator().manual_seed(0))
    a = encode_portrait(model, portrait, "center")
    assert a.reference.shape == (3, TINY.height, TINY.width)
    crop = portrait[10:70].permute(2, 0, 1)  # the central 60x60 square, (3, 60, 60)
    assert abs(float(a.reference.mean()) - float(crop.mean() * 2 - 1)) < 0.02, "not the portrait's colours"
    save_identity(a, tmp_path / "a.safetensors")
    assert torch.equal(load_identity(tmp_path / "a.safetensors").reference, a.reference)
    assert mix(a, random_identity(model, 1), 0.5).reference is None
    assert random_identity(model, 1).reference is None
    assert encode_portrait(tiny_model(reference_frame=False), portrait, "center").reference is None


def test_face_crop_without_a_face_says_what_to_do():
    pytest.importorskip("cv2")
    with pytest.raises(IdentityError, match="no face found.*'center'"):
        encode_portrait(tiny_model(), torch.zeros(128, 128, 3), "face")


@pytest.mark.parametrize("rate,channels,seconds", [(16000, 1, 1.0), (44100, 2, 0.37), (8000, 6, 0.5)])
def test_audio_frame_count_is_ceil_duration_times_fps(rate, channels, seconds):
    wav = np.random.default_rng(0).standard_normal((channels, int(rate * seconds))).astype(np.float32) * 0.1
    for fps in (25.0, 24.0, 29.97):
        feats = audio_features(wav, rate, fps, TINY)
        assert feats.n_frames == math.ceil(wav.shape[1] / rate * fps - 1e-9)
        assert feats.features.shape[1:] == (TINY.audio_window, TINY.audio_mels)
        assert torch.isfinite(feats.features).all()


def test_audio_features_follow_loudness_and_reject_bad_audio():
    rate = 16000
    t = np.arange(rate) / rate
    wav = (np.random.default_rng(0).standard_normal(rate) * 0.3 * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    wav[: rate // 2] = 0.0  # first half silent, second half loud broadband noise
    feats = audio_features(wav, rate, 25.0, TINY).features  # (25, K, M)
    assert feats[20].mean() > feats[5].mean() + 0.5
    with pytest.raises(AudioError, match="empty"):
        audio_features(np.zeros((1, 0), np.float32), rate, 25.0, TINY)
    bad = wav.copy()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        audio_features(bad, rate, 25.0, TINY)


def test_core_imports_without_comfyui():
    code = (
        "import sys\n"
        "for m in ('comfy', 'comfy_api', 'folder_paths', 'nodes', 'node_helpers'): sys.modules[m] = None\n"
        "import pkgutil, importlib, starcaster_core\n"
        "for info in pkgutil.walk_packages(starcaster_core.__path__, 'starcaster_core.'):\n"
        "    if not info.name.endswith('__main__'): importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


def test_a_bf16_model_makes_an_identity_from_a_portrait():
    """The loader's bf16 choice: the identity encoder resizes the crop in fp32 (CPU antialiased
    resizing has no bf16 kernel; the bench found it failing) and reads it in bf16, close to
    what the fp32 model reads."""
    model = tiny_model()
    portrait = torch.rand(80, 60, 3, generator=torch.Generator().manual_seed(0))
    full = encode_portrait(model, portrait, "center").embedding
    half = encode_portrait(model.to(torch.bfloat16), portrait, "center").embedding
    assert half.dtype == torch.float32 and (half - full).abs().max() < 0.05 * full.abs().max()
