"""Tests of the procedural talking-avatar world (starcaster_core.synthetic). CPU, seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from starcaster_core.synthetic import (
    IDENTITY_DIM,
    IdentityParams,
    ShardDataset,
    frame_count,
    make_sequence,
    mouth_from_audio,
    orbit_sequence,
    render_frames,
    render_portrait,
    sample_identity,
    speech_audio,
    talking_sequence,
    write_shards,
)
from starcaster_core.synthetic.espeak import espeak_available
from starcaster_core.synthetic.formant import synthesize_speech

SIZE = 64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _changed(a: torch.Tensor, b: torch.Tensor, tol: float = 0.02) -> torch.Tensor:
    """(H, W) bool mask of pixels that differ between two (3, H, W) frames."""
    return (a - b).abs().amax(0) > tol


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert rows.numel() > 0, "empty mask"
    return float(rows.float().mean()), float(cols.float().mean())


# ---------------------------------------------------------------- identity


def test_identity_sampling_is_seeded_and_vector_round_trips():
    a, b = IdentityParams.sample(_gen(11)), IdentityParams.sample(_gen(11))
    assert a == b
    assert a != IdentityParams.sample(_gen(12))
    vec = a.identity_vector()
    assert vec.shape == (IDENTITY_DIM,) and vec.dtype == torch.float32
    assert vec.min() >= 0.0 and vec.max() <= 1.0
    back = IdentityParams.from_vector(vec)
    assert back.hair_style == a.hair_style
    assert torch.allclose(back.identity_vector(), vec, atol=1e-5)


# ---------------------------------------------------------------- renderer


def test_render_is_deterministic_with_seeded_identity():
    expr = torch.tensor([[0.3, 0.2, 0.0], [0.8, -0.5, 0.4]])
    cam = torch.tensor([[0.0, 0.0, 0.0, 1.0], [30.0, 10.0, 5.0, 1.2]])
    f1 = render_frames(IdentityParams.sample(_gen(3)), expr, None, cam, size=SIZE)
    f2 = render_frames(IdentityParams.sample(_gen(3)), expr, None, cam, size=SIZE)
    assert f1.shape == (2, 3, SIZE, SIZE) and f1.dtype == torch.float32
    assert torch.equal(f1, f2)
    assert f1.min() >= 0.0 and f1.max() <= 1.0
    assert (f1[0] - f1[1]).abs().mean() > 0.02  # view and expression changed the frame


def test_any_resolution_and_portrait():
    frame = render_frames(sample_identity(1), size=(48, 80))
    assert frame.shape == (1, 3, 48, 80)
    portrait = render_portrait(sample_identity(7), 96)
    assert portrait.shape == (96, 96, 3)
    assert portrait.std() > 0.05  # not a flat image


def test_different_identities_give_different_images():
    ids = [sample_identity(s) for s in range(6)]
    frames = render_frames(ids, size=SIZE)  # (6, 3, H, W)
    for i in range(6):
        for j in range(i + 1, 6):
            assert (frames[i] - frames[j]).abs().mean() > 0.02, (i, j)


def _expr(jaw: float = 0.0, width: float = 0.0, blink: float = 0.0) -> torch.Tensor:
    return torch.tensor([[jaw, width, blink]])


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_mouth_opening_changes_mouth_region_not_eyes(seed):
    ident = sample_identity(seed)
    closed = render_frames(ident, _expr(0.0), size=SIZE)[0]
    opened = render_frames(ident, _expr(1.0), size=SIZE)[0]
    blinked = render_frames(ident, _expr(0.0, blink=1.0), size=SIZE)[0]
    mouth = _changed(opened, closed)
    eyes = _changed(blinked, closed)
    assert mouth.sum() >= 8 and eyes.sum() >= 4
    assert not (mouth & eyes).any()
    # the jaw leaves every pixel of the eye region untouched
    assert (opened - closed).abs().amax(0)[eyes].max() < 1e-5
    assert _centroid(mouth)[0] > _centroid(eyes)[0] + 5  # mouth lies below the eyes


@pytest.mark.parametrize("pose, camera", [((0, 0, 0), (0, 0, 0, 1)), ((15, -5, 4), (-25, 10, 0, 1.1))])
def test_mouth_box_holds_every_pixel_the_jaw_and_width_change_and_little_else(pose, camera):
    """The trainer's mouth crop: every pixel any mouth of the identity visibly moves (by 0.1 or
    more: the faintest anti-aliased fringes on a turned head may fall outside), from any turn."""
    pose, camera = torch.tensor([pose], dtype=torch.float32), torch.tensor([camera], dtype=torch.float32)
    ident, size = sample_identity(4), 64
    boxes, changed = [], torch.zeros(size, size, dtype=torch.bool)
    shut = render_frames(ident, _expr(0.0), pose, camera, size=size)[0]
    for jaw, width in ((0.0, -1.0), (0.0, 1.0), (1.0, -1.0), (1.0, 1.0), (0.5, 0.0)):
        frame, box = render_frames(ident, torch.tensor([[jaw, width, 0.0]]), pose, camera, size=size,
                                   with_mouth_box=True)
        changed |= _changed(frame[0], shut, tol=0.1)
        boxes.append(box[0])
    assert all(torch.equal(b, boxes[0]) for b in boxes)  # where the mouth can be, not where it is
    cx, cy, w, h = boxes[0].tolist()
    ys, xs = torch.nonzero(changed, as_tuple=True)
    assert len(ys) >= 20
    assert xs.min() >= (cx - w / 2) * (size - 1) and xs.max() <= (cx + w / 2) * (size - 1)
    assert ys.min() >= (cy - h / 2) * (size - 1) and ys.max() <= (cy + h / 2) * (size - 1)
    assert w * h < 0.06  # a few % of the frame (the default box of frames without one: 16 %)


def test_camera_yaw_moves_features_and_hides_far_side():
    ident = sample_identity(2)

    def features(yaw: float) -> tuple[torch.Tensor, torch.Tensor]:
        cam = torch.tensor([[yaw, 0.0, 0.0, 1.0]])
        base = render_frames(ident, _expr(0.0), None, cam, size=SIZE)[0]
        mouth = _changed(render_frames(ident, _expr(1.0), None, cam, size=SIZE)[0], base)
        eyes = _changed(render_frames(ident, _expr(blink=1.0), None, cam, size=SIZE)[0], base)
        return mouth, eyes

    mouth0, eyes0 = features(0.0)
    mouth_r, eyes_r = features(35.0)
    mouth_l, _ = features(-35.0)
    # camera orbits to +x: the face turns towards the image left, and the other way round
    assert _centroid(mouth_r)[1] < _centroid(mouth0)[1] - 3
    assert _centroid(mouth_l)[1] > _centroid(mouth0)[1] + 3
    assert abs(_centroid(mouth0)[1] - (SIZE - 1) / 2) < 1.5
    assert _centroid(eyes_r)[1] < _centroid(eyes0)[1] - 3
    # near profile, the far eye is hidden behind the head
    _, eyes_side = features(85.0)
    assert 0 < eyes_side.sum() < 0.6 * eyes0.sum()
    # from behind, no facial feature shows at all
    mouth_back, eyes_back = features(180.0)
    assert mouth_back.sum() == 0 and eyes_back.sum() == 0


def test_head_pose_yaw_moves_features():
    ident = sample_identity(5)
    base = render_frames(ident, _expr(0.0), size=SIZE)[0]
    mouth0 = _changed(render_frames(ident, _expr(1.0), size=SIZE)[0], base)
    pose = torch.tensor([[30.0, 0.0, 0.0]])
    turned = render_frames(ident, _expr(0.0), pose, size=SIZE)[0]
    mouth1 = _changed(render_frames(ident, _expr(1.0), pose, size=SIZE)[0], turned)
    assert _centroid(mouth1)[1] > _centroid(mouth0)[1] + 3  # head turns towards image right


# ---------------------------------------------------------------- audio and the lip-sync rule


def test_formant_speech_is_deterministic():
    a, sr = synthesize_speech(1.5, seed=4)
    b, _ = synthesize_speech(1.5, seed=4)
    c, _ = synthesize_speech(1.5, seed=5)
    assert sr == 16000 and a.dtype == np.float32 and a.shape == (24000,)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.5 < np.abs(a).max() <= 1.0


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")
def test_espeak_speech():
    wave, sr = speech_audio(2.0, seed=0, source="espeak")
    assert sr == 16000 and wave.dtype == np.float32 and wave.shape == (32000,)
    assert np.sqrt(np.mean(wave**2)) > 0.01


@pytest.mark.parametrize(
    ("n_samples", "sample_rate", "fps", "expected"),
    [(16000, 16000, 25.0, 25), (16160, 16000, 25.0, 26), (8000, 16000, 30.0, 15),
     (53333, 16000, 30.0, 100), (44100, 44100, 24.0, 24), (1, 16000, 25.0, 1)],
)
def test_frame_count_is_ceil_of_duration_times_fps(n_samples, sample_rate, fps, expected):
    assert frame_count(n_samples, sample_rate, fps) == expected
    wave = np.zeros(n_samples, dtype=np.float32)
    assert len(mouth_from_audio(wave, sample_rate, fps)["mouth"]) == math.ceil(
        round(n_samples / sample_rate * fps, 6))


def test_mouth_follows_speech_energy_and_closes_in_silence():
    fps = 25.0
    speech, sr = synthesize_speech(2.0, seed=3)
    wave = np.concatenate([np.zeros(sr, np.float32), speech, np.zeros(sr, np.float32)])  # 4 s
    mouth = mouth_from_audio(wave, sr, fps)["mouth"]
    assert mouth.shape == (100,)
    assert mouth[:24].max() < 1e-3  # leading second of silence
    assert mouth[80:].max() < 0.05  # 0.2 s after the speech ends
    assert mouth[85:].max() < 1e-3
    assert mouth[25:75].max() > 0.8
    hop = sr // 25
    rms = np.array([np.sqrt(np.mean(wave[k * hop:(k + 1) * hop] ** 2)) for k in range(100)])
    assert np.corrcoef(mouth, rms)[0, 1] > 0.75
    # gain invariance: a quieter recording of the same speech gives the same mouth
    quiet = mouth_from_audio(wave * 0.3, sr, fps)["mouth"]
    assert np.abs(quiet - mouth).max() < 0.02


# ---------------------------------------------------------------- sequences


def test_talking_sequence_outputs_and_determinism():
    wave, sr = synthesize_speech(1.0, seed=1)
    ident = sample_identity(4)
    seq = talking_sequence(ident, (wave, sr), 25.0, None, _gen(0), size=32)
    again = talking_sequence(ident, (wave, sr), 25.0, None, _gen(0), size=32)
    other = talking_sequence(ident, (wave, sr), 25.0, None, _gen(1), size=32)
    assert seq["frames"].shape == (25, 3, 32, 32)
    assert seq["mouth"].shape == (25,) and seq["pose"].shape == (25, 3)
    assert seq["camera"].shape == (25, 4) and torch.all(seq["camera"][:, 3] == 1.0)
    assert seq["audio"].shape == (16000,) and seq["sample_rate"] == 16000
    assert torch.equal(seq["frames"], again["frames"])
    assert not torch.equal(seq["pose"], other["pose"])
    assert seq["pose"].std(0).min() > 0.1  # the head is not frozen
    assert torch.equal(seq["identity"], ident.identity_vector())


def test_talking_sequence_resamples_and_takes_fixed_camera():
    wave, _ = synthesize_speech(0.5, seed=2, sample_rate=22050)
    seq = talking_sequence(sample_identity(0), (wave, 22050), 30.0, (20.0, 5.0, 0.0, 1.1), _gen(0),
                           size=16)
    assert seq["frames"].shape[0] == 15
    assert torch.allclose(seq["camera"], torch.tensor([20.0, 5.0, 0.0, 1.1]).expand(15, 4))


def test_orbit_sequence_sweeps_yaw_with_still_neutral_head():
    seq = orbit_sequence(sample_identity(6), 12, _gen(3), size=32)
    yaw = seq["camera"][:, 0]
    assert seq["frames"].shape == (12, 3, 32, 32)
    assert abs(float(yaw[-1] - yaw[0])) > 55 and yaw.min() < -25 and yaw.max() > 25
    steps = yaw[1:] - yaw[:-1]
    assert torch.all(steps > 0) or torch.all(steps < 0)
    assert seq["camera"][:, 1].std() > 0  # some pitch
    assert torch.all(seq["mouth"] == 0) and torch.all(seq["pose"] == 0)
    assert (seq["frames"][0] - seq["frames"][-1]).abs().mean() > 0.02


# ---------------------------------------------------------------- shards


@pytest.mark.parametrize("kind", ["talking", "orbit"])
def test_shard_write_read_round_trip(tmp_path, kind):
    paths = write_shards(tmp_path, 3, kind, seed=5, frames_per_seq=6, size=16, fps=25.0,
                         shard_size=2, audio="formant")
    assert [p.name for p in paths] == ["shard-00000.safetensors", "shard-00001.safetensors"]
    data = ShardDataset(tmp_path)
    assert len(data) == 3
    item = data[2]
    ref = make_sequence(kind, 2, 5, 6, 16, 25.0, audio="formant")
    assert item["frames"].shape == (6, 3, 16, 16) and item["frames"].dtype == torch.float32
    assert (item["frames"] - ref["frames"]).abs().max() <= 0.5 / 255 + 1e-6
    for key in ("mouth", "mouth_width", "blink", "pose", "camera", "identity", "mouth_box"):
        assert torch.equal(item[key], ref[key].float()), key
    assert (item["audio"] - ref["audio"]).abs().max() < 1e-4
    assert item["sample_rate"] == 16000 and item["fps"] == 25.0 and item["kind"] == kind
    raw = ShardDataset(tmp_path, float_frames=False)[0]["frames"]
    assert raw.dtype == torch.uint8


def test_parallel_writers_write_the_same_shards(tmp_path):
    """Worker processes split the shards; the data and the index match one process's output."""
    kw = dict(seed=2, frames_per_seq=4, size=16, shard_size=2, audio="formant")
    one = write_shards(tmp_path / "one", 5, "talking", **kw)
    two = write_shards(tmp_path / "two", 5, "talking", workers=2, **kw)
    assert [p.name for p in two] == [p.name for p in one] and len(one) == 3
    for a, b in zip(one, two, strict=True):
        ta, tb = load_file(a), load_file(b)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (tmp_path / "one" / "index.json").read_text() == (tmp_path / "two" / "index.json").read_text()


def test_shared_identities(tmp_path):
    write_shards(tmp_path, 3, "orbit", seed=1, frames_per_seq=2, size=8, shard_size=8,
                 n_identities=2)
    data = ShardDataset(tmp_path)
    assert [data[i]["identity_index"] for i in range(3)] == [0, 1, 0]
    assert torch.equal(data[0]["identity"], data[2]["identity"])
    assert not torch.equal(data[0]["identity"], data[1]["identity"])


def test_write_shards_rejects_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        write_shards(tmp_path, 1, "dancing", frames_per_seq=2, size=8)  # type: ignore[arg-type]
