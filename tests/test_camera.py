"""Camera trajectories: presets, keyframe slerp, JSON, resampling, pose features, plot. CPU, seconds."""

import json
import math

import pytest
import torch

from starcaster_core.camera import (
    ARC_PITCH_DEG,
    CameraPreset,
    Keyframe,
    PresetSpec,
    build_trajectory,
    combine,
    keyframe_quaternions,
    keyframe_trajectory,
    plot_trajectory,
    pose_features,
    preset_trajectory,
    resample,
    trajectory_from_json,
    trajectory_to_json,
)
from starcaster_core.camera_json import parse_spec, render_trajectory, resolve_length, trajectory_to_keyframes

PRESETS = list(CameraPreset)
# Largest |value| a preset reaches at amplitude 1, per channel (yaw, pitch, roll deg, log-distance).
SCALE = torch.tensor([30.0, 10.0, 5.0, 0.36])


def log_distance(traj: torch.Tensor) -> torch.Tensor:
    """(T, 4) with distance replaced by log(distance): every channel scales linearly with amplitude."""
    return torch.cat([traj[:, :3], traj[:, 3:].log()], dim=1)


def wrapped(a: torch.Tensor) -> torch.Tensor:
    """Angles in degrees folded into [-180, 180)."""
    return torch.remainder(a + 180.0, 360.0) - 180.0


# ---------------------------------------------------------------- presets


def test_combo_options_are_the_preset_values():
    assert [p.value for p in CameraPreset] == [
        "static", "orbit_left", "orbit_right", "arc", "nod", "zoom_in", "zoom_out", "dolly", "handheld"]
    assert CameraPreset("nod") is CameraPreset.NOD


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("n_frames", [1, 2, 3, 17, 120])
@pytest.mark.parametrize("loop", [False, True])
def test_presets_are_continuous_and_bounded(preset, n_frames, loop):
    for amplitude, speed in ((1.0, 1.0), (2.0, 3.0)):
        traj = preset_trajectory(preset, n_frames, amplitude=amplitude, speed=speed, loop=loop, seed=1)
        assert traj.shape == (n_frames, 4) and traj.dtype == torch.float32
        assert torch.isfinite(traj).all() and (traj[:, 3] > 0).all()
        extent = log_distance(traj).abs().amax(dim=0)  # (4,)
        assert (extent <= amplitude * SCALE * 1.01).all(), (preset, extent)
        if n_frames > 1:
            step = log_distance(traj).diff(dim=0).abs().amax(dim=0)  # (4,)
            # a smooth curve at `speed` cycles per clip moves at most ~2*pi*speed*extent per clip;
            # 4*pi leaves room for the ease warp (its peak rate is 1.5x)
            bound = 4 * math.pi * max(speed, 1.0) * amplitude * SCALE / (n_frames - 1)
            assert (step <= torch.minimum(bound, 2 * amplitude * SCALE) + 1e-5).all(), (preset, step, bound)


def test_long_clip_steps_shrink_with_frame_count():
    for preset in PRESETS:
        coarse = preset_trajectory(preset, 50).diff(dim=0).abs().amax()
        fine = preset_trajectory(preset, 500).diff(dim=0).abs().amax()
        assert fine <= coarse / 5 + 1e-6, preset  # 10x the frames -> ~10x smaller steps


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("speed", [0.3, 1.0, 2.5])
def test_loop_closes(preset, speed):
    traj = preset_trajectory(preset, 61, speed=speed, loop=True, seed=4)
    torch.testing.assert_close(traj[0], traj[-1], atol=1e-4, rtol=0)


def test_static_is_constant_default_framing():
    traj = preset_trajectory("static", 30, amplitude=5.0, speed=3.0)
    assert torch.equal(traj, torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(30, 4))


def test_preset_amplitudes_and_directions():
    orbit = preset_trajectory(CameraPreset.ORBIT_LEFT, 40)
    assert orbit[0, 0] == 0 and orbit[-1, 0] == pytest.approx(30.0)  # positive yaw = subject's left
    assert orbit[:, 0].diff().min() >= 0  # one monotone sweep
    assert preset_trajectory("orbit_right", 40, amplitude=0.5)[-1, 0] == pytest.approx(-15.0)
    assert preset_trajectory("zoom_in", 40)[-1, 3] == pytest.approx(0.7)
    assert preset_trajectory("zoom_out", 40)[-1, 3] == pytest.approx(1 / 0.7)
    assert preset_trajectory("nod", 41)[:, 1].abs().max() == pytest.approx(10.0, abs=0.05)
    arc = preset_trajectory("arc", 41)
    assert arc[0, 0] == pytest.approx(-30.0) and arc[-1, 0] == pytest.approx(30.0)
    assert arc[20, 1] == pytest.approx(ARC_PITCH_DEG)
    # ease: starts and ends at rest; without ease a constant-speed sweep
    eased, linear = preset_trajectory("orbit_left", 101), preset_trajectory("orbit_left", 101, ease=False)
    assert eased[1, 0] < 0.1 * linear[1, 0]
    torch.testing.assert_close(linear[:, 0].diff(), torch.full((100,), 0.3), atol=1e-4, rtol=0)
    # speed 2 = out and back
    assert preset_trajectory("orbit_left", 41, speed=2.0)[-1, 0].abs() < 1e-4


def test_handheld_deterministic_per_seed():
    a = preset_trajectory("handheld", 50, seed=7)
    assert torch.equal(a, preset_trajectory("handheld", 50, seed=7))
    b = preset_trajectory("handheld", 50, seed=8)
    assert (a - b).abs().max() > 0.1
    assert a[:, :3].std(dim=0).min() > 0.05  # it actually moves, on every axis
    state = torch.random.get_rng_state()
    preset_trajectory("handheld", 50, seed=9)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


def test_preset_errors():
    with pytest.raises(ValueError, match="choose one of: static, orbit_left"):
        preset_trajectory("spin", 10)
    with pytest.raises(ValueError, match="n_frames"):
        preset_trajectory("nod", 0)
    with pytest.raises(ValueError, match="speed"):
        preset_trajectory("nod", 10, speed=0.0)


# ---------------------------------------------------------------- keyframes


KEYS = (Keyframe(3, yaw=-20.0, pitch=5.0, distance=1.2), Keyframe(20, yaw=35.0, pitch=-12.0, roll=8.0),
        Keyframe(31, yaw=10.0, pitch=20.0, roll=-4.0, distance=0.6), Keyframe(45, yaw=-60.0, distance=0.9))


def test_keyframes_pass_through_exactly_and_hold():
    traj = keyframe_trajectory(KEYS, 60)
    assert traj.shape == (60, 4) and traj.dtype == torch.float32
    for k in KEYS:
        torch.testing.assert_close(traj[k.frame], torch.tensor([k.yaw, k.pitch, k.roll, k.distance]),
                                   atol=1e-4, rtol=0)
    assert torch.equal(traj[:3], traj[3].expand(3, 4))  # held before the first keyframe
    assert torch.equal(traj[45:], traj[45].expand(15, 4))  # and after the last
    assert traj.diff(dim=0).abs().max() < 8.0  # continuous


def test_distance_spline_is_smooth_and_does_not_overshoot():
    keys = (Keyframe(0, distance=1.0), Keyframe(10, distance=0.2), Keyframe(20, distance=0.21),
            Keyframe(30, distance=3.0))
    dist = keyframe_trajectory(keys, 31)[:, 3]
    assert dist.min() >= 0.2 - 1e-6 and dist.max() <= 3.0 + 1e-6  # monotone cubic: stays in range
    assert (dist[:11].diff() <= 1e-6).all() and (dist[10:].diff() >= -1e-6).all()
    assert keyframe_trajectory(keys[:2], 11)[5, 3] == pytest.approx(0.6)  # 2 keys: linear


def test_slerp_unit_norm_and_short_path():
    keys = (Keyframe(0, yaw=170.0), Keyframe(10, yaw=-170.0))
    quats = keyframe_quaternions(keys, 11)
    torch.testing.assert_close(quats.norm(dim=-1), torch.ones(11, dtype=quats.dtype))
    yaw = keyframe_trajectory(keys, 11)[:, 0]
    assert wrapped(yaw).abs().min() >= 170.0 - 1e-4  # never swings through yaw 0
    assert yaw[5] == pytest.approx(180.0, abs=1e-4)  # the midpoint is the back of the head
    assert (yaw.diff() > 0).all() and yaw.diff().max() < 2.0 + 1e-4  # 20 deg in 10 equal steps, no jump
    torch.testing.assert_close(wrapped(yaw[-1:]), torch.tensor([-170.0]), atol=1e-4, rtol=0)
    # a general pair stays unit-norm too, every frame
    q = keyframe_quaternions(KEYS, 60)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(60, dtype=q.dtype))


def test_single_keyframe_is_constant():
    traj = keyframe_trajectory([Keyframe(5, yaw=12.0, distance=1.5)], 8)
    assert torch.allclose(traj, torch.tensor([12.0, 0.0, 0.0, 1.5]).expand(8, 4), atol=1e-5)


@pytest.mark.parametrize("keys, message", [
    ((Keyframe(20), Keyframe(10)), "keyframes out of order: frame 10 comes after frame 20; sort keyframes by frame"),
    ((Keyframe(4), Keyframe(4)), "frame 4 repeats frame 4"),
    ((Keyframe(0, distance=0.0),), "distance must be > 0"),
    ((Keyframe(0, yaw=float("nan")),), "yaw must be a finite number"),
    ((Keyframe(0, pitch=95.0),), "pitch 95.0 is beyond"),
    ((Keyframe(-1),), "frame must be an integer >= 0"),
    ((), "add at least one"),
])
def test_keyframe_validation(keys, message):
    with pytest.raises(ValueError, match=message):
        keyframe_trajectory(keys, 10)


# ---------------------------------------------------------------- JSON


def test_json_round_trip_keyframes_and_preset():
    text = trajectory_to_json(KEYS)
    assert json.loads(text)["version"] == 1
    assert trajectory_from_json(text) == KEYS
    spec = PresetSpec(CameraPreset.HANDHELD, amplitude=0.5, speed=2.0, ease=False, loop=True, seed=11)
    assert trajectory_from_json(trajectory_to_json(spec)) == spec
    assert torch.equal(build_trajectory(spec, 24), preset_trajectory("handheld", 24, amplitude=0.5, speed=2.0,
                                                                     ease=False, loop=True, seed=11))
    # only "frame" is required; the rest default
    assert trajectory_from_json('{"version": 1, "keyframes": [{"frame": 0}, {"frame": 9, "yaw": 5}]}') == (
        Keyframe(0), Keyframe(9, yaw=5.0))


@pytest.mark.parametrize("text, message", [
    ('{"version": 1, "keyframes": [{"frame": 0,}]}', "malformed"),
    ("not json", "malformed"),
    ("[1, 2]", "must be an object"),
    ('{"keyframes": [{"frame": 0}]}', '"version": 1'),
    ('{"version": 2, "keyframes": [{"frame": 0}]}', '"version": 1'),
    ('{"version": 1}', 'exactly one of "keyframes" or "preset"'),
    ('{"version": 1, "keyframes": []}', "non-empty list"),
    ('{"version": 1, "keyframes": [{"yaw": 3}]}', 'keyframe 0 must be an object with a "frame"'),
    ('{"version": 1, "keyframes": [{"frame": 0, "yw": 3}]}', r"unknown key\(s\) \['yw'\]"),
    ('{"version": 1, "keyframes": [{"frame": 0, "yaw": "left"}]}', "'yaw' must be a finite number"),
    ('{"version": 1, "keyframes": [{"frame": 2.5}]}', "whole number"),
    ('{"version": 1, "keyframes": [{"frame": 20}, {"frame": 10}]}', "frame 10 comes after frame 20"),
    ('{"version": 1, "preset": {"name": "spin"}}', "choose one of"),
    ('{"version": 1, "preset": {"name": "nod", "loop": "yes"}}', "must be true or false"),
])
def test_json_errors_are_actionable(text, message):
    with pytest.raises(ValueError, match=message):
        trajectory_from_json(text)


def test_json_module_and_reexports_are_the_same_functions():
    import starcaster_core.camera as camera
    import starcaster_core.camera_json as camera_json

    assert camera.trajectory_from_json is camera_json.trajectory_from_json
    assert camera.trajectory_to_json is camera_json.trajectory_to_json
    assert camera.JSON_VERSION == camera_json.JSON_VERSION == 1
    with pytest.raises(AttributeError):
        camera.not_a_camera_function  # noqa: B018


# ---------------------------------------------------------------- the node's recipe (camera_json)


def test_render_trajectory_layers_keyframes_on_the_preset():
    orbit = PresetSpec(CameraPreset.ORBIT_LEFT)
    base = build_trajectory(orbit, 40)
    for empty in ("", "   ", None):
        assert torch.equal(render_trajectory(orbit, empty, 40), base)  # empty = the preset alone
    nod = trajectory_to_json((Keyframe(0), Keyframe(10, pitch=8.0), Keyframe(20, pitch=-4.0, distance=0.8)))
    out = render_trajectory(orbit, nod, 40)
    torch.testing.assert_close(out[:, 0], base[:, 0])  # yaw: the orbit only
    assert out[10, 1] == pytest.approx(8.0, abs=1e-4) and out[20, 1] == pytest.approx(-4.0, abs=1e-4)
    torch.testing.assert_close(out[20:, 3], base[20:, 3] * 0.8)  # distances multiply, held after the last key
    # with the static preset the keyframes are absolute; a preset JSON layers like a second preset
    torch.testing.assert_close(render_trajectory(PresetSpec(), nod, 40), keyframe_trajectory(
        trajectory_from_json(nod), 40))
    both = render_trajectory(orbit, trajectory_to_json(PresetSpec(CameraPreset.NOD, speed=2.0)), 40)
    torch.testing.assert_close(both, combine(base, preset_trajectory("nod", 40, speed=2.0)))
    with pytest.raises(ValueError, match="out of order"):
        render_trajectory(orbit, '{"version": 1, "keyframes": [{"frame": 5}, {"frame": 5}]}', 40)


def test_resolve_length():
    keys = parse_spec('{"version": 1, "keyframes": [{"frame": 0}, {"frame": 47, "yaw": 9}]}')
    assert parse_spec("") is None and parse_spec(" \n") is None
    assert resolve_length(12, 100, keys) == 12  # an explicit count wins
    assert resolve_length(0, 100, keys) == 100  # then the audio
    assert resolve_length(0, None, keys) == 48  # then the keyframes' own length
    with pytest.raises(ValueError, match="connect STARCaster Audio Features or set a frame count"):
        resolve_length(0, None, PresetSpec())
    with pytest.raises(ValueError, match="frame count"):
        resolve_length(0, None, None)


def test_saved_trajectory_reloads_frame_for_frame():
    traj = combine(preset_trajectory("arc", 33, amplitude=2.0), preset_trajectory("handheld", 33, seed=3))
    traj = combine(traj, preset_trajectory("zoom_out", 33))
    keys = trajectory_to_keyframes(traj)
    assert [k.frame for k in keys] == list(range(33))
    again = keyframe_trajectory(trajectory_from_json(trajectory_to_json(keys)), 33)
    torch.testing.assert_close(again, traj, atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match=r"\(T, 4\)"):
        trajectory_to_keyframes(torch.zeros(3))


# ---------------------------------------------------------------- combine, resample, features, plot


def test_combine_adds_angles_and_multiplies_distance():
    orbit = preset_trajectory("orbit_left", 30)
    nod = preset_trajectory("nod", 30, speed=2.0)
    zoom = preset_trajectory("zoom_in", 30)
    both = combine(combine(orbit, nod), zoom)
    torch.testing.assert_close(both[:, :3], orbit[:, :3] + nod[:, :3])
    torch.testing.assert_close(both[:, 3], zoom[:, 3])
    offset = combine(orbit, torch.tensor([[5.0, 0.0, 0.0, 2.0]]))  # a single frame broadcasts
    torch.testing.assert_close(offset[:, 0], orbit[:, 0] + 5.0)
    with pytest.raises(ValueError, match=r"resample\(b, 30\)"):
        combine(orbit, preset_trajectory("nod", 20))


def test_resample_keeps_endpoints_and_shape():
    traj = keyframe_trajectory(KEYS, 60)
    for n in (1, 2, 7, 60, 250):
        out = resample(traj, n)
        assert out.shape == (n, 4) and out.dtype == traj.dtype
        torch.testing.assert_close(out[0], traj[0], atol=1e-5, rtol=1e-5)
        if n > 1:
            torch.testing.assert_close(out[-1], traj[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(resample(traj, 60), traj, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(resample(traj[:1], 5), traj[:1].expand(5, 4))
    slow = resample(preset_trajectory("orbit_left", 20, ease=False), 39)
    torch.testing.assert_close(slow[:, 0], preset_trajectory("orbit_left", 39, ease=False)[:, 0], atol=1e-4, rtol=0)


def test_pose_features():
    traj = preset_trajectory("orbit_left", 12)
    feats = pose_features(traj)
    assert feats.shape == (12, 10)
    torch.testing.assert_close(feats[0], torch.tensor([1.0, 0, 0, 0, 1, 0, 0, 0, 1, 0]))  # yaw 0 -> identity
    batched = pose_features(torch.stack([traj, traj.flip(0)]))  # any leading dims
    assert batched.shape == (2, 12, 10)
    torch.testing.assert_close(batched[0], feats)
    rot = feats[:, :9].reshape(12, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(12, 3, 3), atol=1e-5, rtol=0)
    # positive yaw swings the camera (at +x, out of the face) toward +y, the subject's left
    cam = pose_features(torch.tensor([90.0, 0.0, 0.0, 1.0]))[:9].reshape(3, 3) @ torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(cam, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    # positive pitch raises it (+z)
    cam = pose_features(torch.tensor([0.0, 90.0, 0.0, 1.0]))[:9].reshape(3, 3) @ torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(cam, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    assert pose_features(torch.tensor([0.0, 0.0, 0.0, 2.0]))[9] == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        pose_features(torch.zeros(5, 3))


def test_plot_shape_and_content():
    image = plot_trajectory(preset_trajectory("arc", 40), width=320, height=200)
    assert image.shape == (200, 320, 3) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.05  # not a blank canvas
    assert image.reshape(-1, 3).unique(dim=0).shape[0] > 10  # lines in several colours
    assert plot_trajectory(preset_trajectory("static", 1)).shape == (256, 512, 3)


def test_core_imports_without_comfy(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "comfy", None)
    for name in ("starcaster_core.camera", "starcaster_core.camera_plot", "starcaster_core.camera_json"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    json_module = importlib.import_module("starcaster_core.camera_json")  # imports camera.py itself first
    module = importlib.import_module("starcaster_core.camera")
    assert module.preset_trajectory("static", 2).shape == (2, 4)
    assert module.trajectory_from_json is json_module.trajectory_from_json
