"""Tests of the evaluation metrics and meters (starcaster_core.eval): ground truth scores near
perfect, shuffled audio / wrong cameras / injected seams / noise score near chance. CPU, seconds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import cv2
import pytest
import torch

from starcaster_core.eval import metrics as M
from starcaster_core.eval.evaluate import STILL
from starcaster_core.eval.geometry import head_pose_from_view, view_angles
from starcaster_core.eval.meters import DEFAULT_METERS, MeterConfig, Meters, load_meters, meters_info, save_meters
from starcaster_core.mouth_box import box_mask
from starcaster_core.synthetic import orbit_sequence, sample_identity, speech_audio, talking_sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRIC_NAMES = ("lipsync_r", "lipsync_r_no_tint", "audio_in_mouth", "lipsync_offset", "view_error_deg",
                "camera_follow", "identity_distance", "identity_distance_model", "fidelity_fd", "continuity",
                "drift_ratio", "pose_diversity_deg")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def meters() -> Meters:
    return load_meters(DEFAULT_METERS)


@pytest.fixture(scope="module")
def talking() -> dict:
    """3 s of a held-out world identity speaking, seen from a fixed side view."""
    wave, sr = speech_audio(3.0, 10_001, "formant")
    camera = torch.tensor([15.0, 5.0, 0.0, 1.0])
    return talking_sequence(sample_identity(10_001), (wave, sr), 25.0, camera, _gen(1))


@pytest.fixture(scope="module")
def orbit() -> dict:
    return orbit_sequence(sample_identity(10_002), 50, _gen(2))


# ---------------------------------------------------------------- pure functions


def test_pearson_and_lipsync_edge_cases():
    t = torch.linspace(0, 6.28, 100)
    assert M.lipsync_r(torch.sin(t), torch.sin(t)) == pytest.approx(1.0)
    assert M.lipsync_r(-torch.sin(t), torch.sin(t)) == pytest.approx(-1.0)
    assert M.lipsync_r(torch.zeros(100), torch.sin(t)) == 0.0  # a frozen mouth: r is defined as 0
    speech = torch.rand(100, generator=_gen(4))  # a mouth track with no periodicity to alias on
    assert M.lipsync_offset(speech, speech) == 0
    assert M.lipsync_offset(torch.cat([speech[:2], speech[:-2]]), speech) == 2  # the video 2 frames late
    assert M.lipsync_offset(speech[3:], speech[:-3]) == -3  # 3 frames early


def test_view_geometry_round_trips():
    g = _gen(0)
    camera = torch.cat([torch.randn(64, 3, generator=g) * torch.tensor([30.0, 10.0, 4.0]), torch.ones(64, 1)], 1)
    pose = torch.randn(64, 3, generator=g) * torch.tensor([12.0, 6.0, 4.0])
    assert torch.allclose(view_angles(camera), camera[:, :3], atol=1e-3)  # still head: view = camera
    assert torch.allclose(head_pose_from_view(view_angles(camera, pose), camera), pose, atol=1e-3)
    assert M.view_error_deg(torch.tensor([[179.0, 0.0, 0.0]]), torch.tensor([[-179.0, 0.0, 0.0, 1.0]])) == \
        pytest.approx(1.0)  # wrapped angles


def test_frechet_distance_basics():
    g = _gen(0)
    a = torch.randn(400, 8, generator=g)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = M.frechet_distance(a, a + 2.0)  # mean shift of 2 in 8 dims: 32
    assert shifted == pytest.approx(32.0, rel=1e-4)
    scaled = M.frechet_distance(torch.randn(4000, 2, generator=g), 3 * torch.randn(4000, 2, generator=g))
    assert scaled == pytest.approx(2 * (3 - 1) ** 2, rel=0.1)  # tr(C1 + C2 - 2 sqrt(C1 C2)) = 2 * (3 - 1)^2


def test_drift_ratio_and_windows():
    assert M.drift_ratio(0.8, 0.8) == 1.0
    assert M.drift_ratio(0.8, 0.4) == pytest.approx(0.5)
    early, late = M.drift_windows(1500, 250)
    assert (early.start, early.stop, late.start, late.stop) == (0, 250, 1250, 1500)
    early, late = M.drift_windows(30, 250)  # at most a third of the clip each
    assert early.stop == 10 and late.start == 20


def test_meters_save_load_round_trip(tmp_path):
    meters = Meters(MeterConfig(widths=(8, 8), features=16))
    save_meters(meters, tmp_path / "m.safetensors", {"note": "tiny"})
    back = load_meters(tmp_path / "m.safetensors")
    assert back.config == meters.config and meters_info(tmp_path / "m.safetensors") == {"note": "tiny"}
    x = torch.rand(3, 3, 64, 64)
    assert torch.allclose(back.measure(x).features, meters.measure(x).features)


def test_shipped_meters_are_small_and_documented():
    assert DEFAULT_METERS.is_file() and DEFAULT_METERS.stat().st_size < 2_000_000
    acc = meters_info()["heldout_accuracy"]
    assert acc["jaw_r"] > 0.95 and acc["view_yaw_mae_deg"] < 3.0
    assert acc["identity_rmse"] < 0.6 * acc["identity_rmse_chance"]


# ---------------------------------------------------------------- metrics on ground truth vs chance


def test_lipsync_gt_near_perfect_and_shuffled_near_chance(meters, talking):
    measured = meters.measure(talking["frames"]).mouth
    gt = talking["mouth"]
    assert M.lipsync_r(measured, gt) >= 0.9
    other = talking_sequence(sample_identity(10_001), speech_audio(3.0, 10_003, "formant"), 25.0, None, _gen(1))
    assert abs(M.lipsync_r(measured, other["mouth"])) < 0.3  # somebody else's audio
    g = _gen(5)
    shuffled = [M.lipsync_r(measured, M.shuffle_blocks(gt, 5, g)) for _ in range(20)]  # 0.2 s pieces reordered
    assert sum(abs(r) for r in shuffled) / len(shuffled) < 0.25
    assert M.lipsync_offset(measured, gt) == 0  # rendered frames are in sync with the rule...
    assert M.lipsync_offset(measured[3:], gt[:-3]) == -3  # ...and an audio track 3 frames late is found


def test_lipsync_without_the_tint_reads_the_mouth_not_the_colour(meters, talking):
    """`hold_colour` takes away a tint of whole frames and nothing else; the mouth meter reads a
    still face that turns redder with the speech partly as talking, and nothing once each
    frame's colour is held; ground truth still scores near perfect with its colour held."""
    frames, gt = talking["frames"], talking["mouth"]
    tint = 0.1 * (gt - gt.mean()) / gt.std()  # (T,) in time with the speech
    red = torch.stack([tint, -tint, torch.zeros_like(tint)], 1)[:, :, None, None]  # (T, 3, 1, 1)
    torch.testing.assert_close(M.hold_colour(frames + red), M.hold_colour(frames) + red.mean(0), atol=1e-5, rtol=0)
    still = frames[int(gt.argmin())].expand_as(frames)  # a shut mouth held for every frame
    tinted = still + red  # not clipped to 0..1 (the meters clip): a tint clipped away is not all taken back
    assert M.lipsync_r(meters.measure(tinted).mouth, gt) > 0.3
    assert M.lipsync_r(meters.measure(M.hold_colour(tinted)).mouth, gt) == 0.0  # every frame alike: r is 0
    assert M.lipsync_r(meters.measure(M.hold_colour(frames)).mouth, gt) >= 0.9


def test_audio_in_mouth_is_the_mouth_for_ground_truth_and_the_box_share_for_stripes(talking):
    """What the speech changes in the world's frames (with vs from silence, same blinks, still
    head) lies in the mouth box; stripes that follow the speech over the whole frame score
    about the box's share of the frame, as a change spread evenly does (the baseline)."""
    wave, camera = talking["audio"], talking["camera"][0]
    ident = sample_identity(10_001)

    def still(audio):
        return talking_sequence(ident, audio, 25.0, camera, _gen(3), motion=STILL)

    speaking, silent = still(wave), still(wave * 0.0)
    frames, boxes = speaking["frames"], speaking["mouth_box"]
    assert torch.equal(boxes, silent["mouth_box"])
    mouth = box_mask(boxes, (frames.shape[0], *frames.shape[-2:]))  # (T, H, W)
    assert M.audio_share_in_box(frames, silent["frames"], mouth) > 0.95
    even = M.audio_share_in_box(torch.ones_like(frames), torch.zeros_like(frames), mouth)
    area = float((boxes[:, 2] * boxes[:, 3]).mean())
    assert abs(even - area) < 0.02, (even, area)
    level = (talking["mouth"] - talking["mouth"].mean())[:, None, None, None]  # (T, 1, 1, 1) the speech
    stripes = (torch.arange(frames.shape[-1]) % 4 < 2).float()  # (W,) vertical stripes
    striped = silent["frames"] + 0.05 * level * stripes
    assert abs(M.audio_share_in_box(striped, silent["frames"], mouth) - even) < 0.03


def test_view_error_small_for_gt_and_large_for_wrong_camera(meters, orbit):
    view = meters.measure(orbit["frames"]).view
    camera = orbit["camera"]
    assert M.view_error_deg(view, camera) < 5.0
    wrong = camera.clone()
    wrong[:, 0] = -camera[:, 0]  # the orbit mirrored
    wrong[:, 1] = camera[:, 1] + 10.0
    assert M.view_error_deg(view, wrong) > 15.0


def test_camera_follow_one_for_gt_zero_for_a_video_that_ignores_the_camera(meters, orbit):
    camera = orbit["camera"]  # (T, 4): an orbit of a still head
    assert 0.8 < M.camera_follow(meters.measure(orbit["frames"]).view, camera) < 1.2
    frozen = orbit["frames"][:1].expand_as(orbit["frames"])  # the first view held: the camera ignored
    assert abs(M.camera_follow(meters.measure(frozen).view, camera)) < 0.1
    half = camera[:, :3] * 0.5  # a model that turns half as far as asked
    assert M.camera_follow(half, camera) == pytest.approx(0.5)
    assert math.isnan(M.camera_follow(camera[:, :3], camera[:1].expand_as(camera))), "a still camera tells nothing"


def test_identity_distance_gt_vs_wrong_identity(meters, talking):
    measured = meters.measure(talking["frames"]).identity
    right = M.identity_distance(measured, talking["identity"])
    wrong = M.identity_distance(measured, sample_identity(4242).identity_vector())
    assert right < 0.6 * wrong


def test_pose_diversity_gt_above_still_head(meters, talking, orbit):
    # against the requested camera (a still head on an orbit is the reference-locked case)
    moving = M.pose_diversity(head_pose_from_view(meters.measure(talking["frames"]).view, talking["camera"]))
    locked = M.pose_diversity(head_pose_from_view(meters.measure(orbit["frames"]).view, orbit["camera"]))
    assert moving > 2.0 * locked
    assert moving == pytest.approx(float(talking["pose"].std(0).mean()), rel=0.5)
    # as the CLI measures it: relative to a still-head video of the same audio and camera
    audio = (talking["audio"].numpy(), 16000)
    still = [talking_sequence(sample_identity(10_001), audio, 25.0, talking["camera"][0], _gen(s), motion=STILL)
             for s in (1, 2)]
    v_still, v_still2 = (meters.measure(x["frames"]).view for x in still)
    relative = M.pose_diversity(head_pose_from_view(meters.measure(talking["frames"]).view, v_still))
    assert relative == pytest.approx(float(talking["pose"].std(0).mean()), rel=0.5)
    assert relative > 2.0 * M.pose_diversity(head_pose_from_view(v_still2, v_still))


def test_continuity_smooth_vs_injected_jumps(talking):
    frames = talking["frames"]
    assert M.continuity_ratio(frames, 4) == pytest.approx(1.0, abs=0.25)
    jumps = frames.clone()
    offsets = 0.08 * (torch.arange(frames.shape[0]) // 4 % 2 * 2 - 1).float()  # brightness flips every chunk
    jumps = (jumps + offsets.view(-1, 1, 1, 1)).clamp(0, 1)
    assert M.continuity_ratio(jumps, 4) > 3.0
    assert math.isnan(M.continuity_ratio(frames[:1].expand(20, -1, -1, -1), 4))  # frozen: undefined


def test_frechet_gt_vs_gt_small_vs_noise_large(meters, talking):
    again = talking_sequence(sample_identity(10_001), (talking["audio"].numpy(), 16000), 25.0,
                             talking["camera"][0], _gen(7))  # same clip, other blinks and head motion
    f_gt, f_again = meters.measure(talking["frames"]).features, meters.measure(again["frames"]).features
    noise = (0.5 + 0.25 * torch.randn(talking["frames"].shape, generator=_gen(3))).clamp(0, 1)
    gt_gt = M.frechet_distance(f_again, f_gt)
    assert M.frechet_distance(meters.measure(noise).features, f_gt) > 10 * gt_gt


def test_window_profile_tells_fading_frames_from_a_mouth_out_of_time(meters, talking):
    """The drift ratio's two factors apart, window after window: frames fading to noise lose
    fidelity and keep their sync; a mouth moving at the wrong moments keeps the frames and loses
    the sync; a second render of the same clip keeps both."""
    again = talking_sequence(sample_identity(10_001), (talking["audio"].numpy(), 16000), 25.0,
                             talking["camera"][0], _gen(7))
    frames, gt_mouth = talking["frames"], talking["mouth"]
    n = frames.shape[0]
    noise = (0.5 + 0.25 * torch.randn(frames.shape, generator=_gen(3))).clamp(0, 1)
    fade = torch.linspace(0.0, 1.0, n).view(n, 1, 1, 1)
    m_gt, m_again, m_noise = meters.measure(frames), meters.measure(again["frames"]), meters.measure(noise)
    m_fade = meters.measure((1 - fade) * again["frames"] + fade * noise)

    def profile(m, mouth):
        return M.window_profile(m.features, m_gt.features, m_noise.features, mouth, gt_mouth, 25)

    same = profile(m_again, m_again.mouth)
    assert [a for a, _, _ in same] == [0, 25, 50]  # 3 s at 25 fps: three whole windows of 1 s
    assert all(f > 0.9 and r > 0.8 for _, f, r in same), same
    fading = [f for _, f, _ in profile(m_fade, m_again.mouth)]
    assert fading[0] > 0.8 and fading[0] > fading[1] > fading[2], fading
    out_of_time = profile(m_again, torch.roll(m_again.mouth, 12))  # the mouth half a second late
    assert all(f > 0.9 for _, f, _ in out_of_time) and max(r for _, _, r in out_of_time) < 0.5, out_of_time


# ---------------------------------------------------------------- the command line


def test_cli_end_to_end_on_unseen_audio(tmp_path):
    sf = pytest.importorskip("soundfile")
    t = torch.arange(int(0.6 * 22050)) / 22050  # 0.6 s at a rate the model never saw, stereo
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) * (torch.sin(2 * torch.pi * 3 * t) > 0)
    sf.write(tmp_path / "clip.wav", torch.stack([tone, 0.5 * tone], 1).numpy(), 22050)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "starcaster_core.eval", "--checkpoint", "default", "--audio",
           str(tmp_path / "clip.wav"), "--identity", "seed:5", "--trajectory", "orbit_left", "--steps", "1",
           "--json", str(tmp_path / "scores.json"), "--strip", str(tmp_path / "strip.png")]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in METRIC_NAMES:
        assert name in out.stdout, f"{name} missing from the table:\n{out.stdout}"
    assert "windows (start: fidelity x sync): 0s " in out.stdout, out.stdout
    clip = json.loads((tmp_path / "scores.json").read_text())["clips"][0]
    assert [w["start_s"] for w in clip["info"]["windows"]] == [0.0, 0.2, 0.4]  # 15 frames: windows of a third
    strip = cv2.imread(str(tmp_path / "strip.png"))  # 15 frames: every 4th is 4 frames, 3x upscaled
    assert strip is not None and strip.shape == (2 * 64 * 3, 4 * 64 * 3, 3), None if strip is None else strip.shape
    gt_row, model_row = strip[: 64 * 3].astype(float), strip[64 * 3 :].astype(float)
    assert gt_row.std() > 10 and model_row.std() > 10, "both rows show pictures"
    assert abs(gt_row - model_row).mean() > 1, "the model's row is its own frames, not the ground truth again"


def test_no_portrait_conditions_on_the_embedding_alone(meters):
    from starcaster_core.default import default_model
    from starcaster_core.eval.evaluate import EvalSettings, evaluate_clip
    from starcaster_core.eval.inputs import heldout_clips
    from starcaster_core.generate import GenerateSettings

    model = default_model().eval()
    clip = heldout_clips(1, 0.64)[0]
    gs = GenerateSettings(seed=0, steps=1, chunk=4, context=8)
    with_portrait = evaluate_clip(model, meters, clip, EvalSettings(generate=gs))
    embedding_only = evaluate_clip(model, meters, clip, EvalSettings(generate=gs, portrait=False))
    again = evaluate_clip(model, meters, clip, EvalSettings(generate=gs, portrait=False))
    assert torch.equal(embedding_only.strip, again.strip), "the same settings draw the same frames"
    assert (with_portrait.strip[0] == embedding_only.strip[0]).all(), "the same ground truth"
    drawn = (with_portrait.strip[1] - embedding_only.strip[1]).abs().mean()
    assert drawn > 0.01, f"the portrait changes what the model draws ({drawn:.4f})"
