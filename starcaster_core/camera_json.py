"""Camera trajectories as JSON (save/load, the editor widget's value) and the node's recipe.

Schema (version 1), either keyframes or a preset::

    {"version": 1, "keyframes": [{"frame": 0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "distance": 1.0}, ...]}
    {"version": 1, "preset": {"name": "orbit_left", "amplitude": 1.0, "speed": 1.0, "ease": true,
                              "loop": false, "seed": 0}}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

import torch

from .camera import (
    Keyframe,
    PresetSpec,
    TrajectorySpec,
    as_preset,
    build_trajectory,
    combine,
    validate_keyframes,
    validate_trajectory,
)

JSON_VERSION = 1

_JSON_EXAMPLE = ('{"version": 1, "keyframes": [{"frame": 0, "yaw": 0}, {"frame": 48, "yaw": 30, "distance": 0.8}]} '
                 'or {"version": 1, "preset": {"name": "orbit_left", "amplitude": 1.0}}')
_KEYFRAME_KEYS = tuple(f.name for f in fields(Keyframe))
_KEYFRAME_DEFAULTS = tuple((f.name, f.default) for f in fields(Keyframe)[1:])  # yaw, pitch, roll, distance
_PRESET_KEYS = ("name", "amplitude", "speed", "ease", "loop", "seed")


def trajectory_to_json(spec: TrajectorySpec) -> str:
    """Serialise keyframes or a PresetSpec. Schema (version 1)::

        {"version": 1, "keyframes": [{"frame": 0, "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "distance": 1.0}, ...]}
        {"version": 1, "preset": {"name": "orbit_left", "amplitude": 1.0, "speed": 1.0, "ease": true,
                                  "loop": false, "seed": 0}}

    In keyframes only "frame" is required (an integer >= 0, strictly increasing); missing angles
    default to 0 and distance to 1.0. In a preset only "name" is required.
    """
    if isinstance(spec, PresetSpec):
        body = {"name": as_preset(spec.preset).value, "amplitude": float(spec.amplitude), "speed": float(spec.speed),
                "ease": bool(spec.ease), "loop": bool(spec.loop), "seed": int(spec.seed)}
        return json.dumps({"version": JSON_VERSION, "preset": body})
    keyframes = tuple(spec)
    validate_keyframes(keyframes)
    return json.dumps({"version": JSON_VERSION, "keyframes": [asdict(k) for k in keyframes]})


def _number(obj: dict, key: str, where: str, default: float, *, integer: bool = False) -> float | int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key!r} must be a finite number, got {value!r}")
    if integer:
        if not float(value).is_integer():
            raise ValueError(f"{where}: {key!r} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _unknown_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}; allowed keys are {list(allowed)}")


def trajectory_from_json(text: str) -> PresetSpec | tuple[Keyframe, ...]:
    """Parse the schema of :func:`trajectory_to_json`; raise ValueError saying what is wrong and how to fix it."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as err:
        raise ValueError(f"camera trajectory JSON is malformed ({err}); expected e.g. {_JSON_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ValueError(f"camera trajectory JSON must be an object, got {type(data).__name__}; "
                         f"expected e.g. {_JSON_EXAMPLE}")
    if data.get("version") != JSON_VERSION:
        raise ValueError(f"camera trajectory JSON needs \"version\": {JSON_VERSION}, got {data.get('version')!r}")
    _unknown_keys(data, ("version", "keyframes", "preset"), "camera trajectory JSON")
    if ("keyframes" in data) == ("preset" in data):
        raise ValueError(f"camera trajectory JSON needs exactly one of \"keyframes\" or \"preset\"; "
                         f"expected e.g. {_JSON_EXAMPLE}")
    if "preset" in data:
        body, where = data["preset"], '"preset"'
        if not isinstance(body, dict) or "name" not in body:
            raise ValueError(f'{where} must be an object with a "name", e.g. {{"name": "orbit_left"}}')
        _unknown_keys(body, _PRESET_KEYS, where)
        for flag in ("ease", "loop"):
            if not isinstance(body.get(flag, True), bool):
                raise ValueError(f"{where}: {flag!r} must be true or false, got {body[flag]!r}")
        return PresetSpec(as_preset(body["name"]), _number(body, "amplitude", where, 1.0),
                          _number(body, "speed", where, 1.0), body.get("ease", True), body.get("loop", False),
                          _number(body, "seed", where, 0, integer=True))
    items = data["keyframes"]
    if not isinstance(items, list) or not items:
        raise ValueError('"keyframes" must be a non-empty list of objects like {"frame": 0, "yaw": 0}')
    keyframes = []
    for i, item in enumerate(items):
        where = f"keyframe {i}"
        if not isinstance(item, dict) or "frame" not in item:
            raise ValueError(f'{where} must be an object with a "frame", e.g. {{"frame": 0, "yaw": 10}}, got {item!r}')
        _unknown_keys(item, _KEYFRAME_KEYS, where)
        keyframes.append(Keyframe(_number(item, "frame", where, 0, integer=True),
                                  *(_number(item, k, where, d) for k, d in _KEYFRAME_DEFAULTS)))
    validate_keyframes(keyframes)
    return tuple(keyframes)


# ---------------------------------------------------------------- the node's recipe


def parse_spec(text: str | None) -> TrajectorySpec | None:
    """The keyframes widget's value: empty/blank -> None (preset only), else a parsed spec."""
    if text is None or not str(text).strip():
        return None
    return trajectory_from_json(str(text))


def natural_length(spec: TrajectorySpec | None) -> int | None:
    """Frames a spec covers by itself: up to and including the last keyframe; a preset has none."""
    if spec is None or isinstance(spec, PresetSpec):
        return None
    return spec[-1].frame + 1


def render_trajectory(preset: PresetSpec, keyframes_json: str | None, n_frames: int) -> torch.Tensor:
    """The Camera Trajectory node: ``preset`` layered with the JSON spec (if any) -> ``(T, 4)``.

    Keyframes (or a second preset) in ``keyframes_json`` are offsets on top of the preset:
    angles add, distances multiply (:func:`combine`). With the ``static`` preset they are
    absolute. Keyframes hold their last value after the last keyframe.
    """
    base = build_trajectory(preset, n_frames)  # (T, 4)
    spec = parse_spec(keyframes_json)
    if spec is None:
        return base
    return combine(base, build_trajectory(spec, n_frames))  # (T, 4)


def trajectory_to_keyframes(traj: torch.Tensor) -> tuple[Keyframe, ...]:
    """A rendered ``(T, 4)`` trajectory as one keyframe per frame (lossless to ~1e-4), for saving."""
    validate_trajectory(traj)
    rows = traj.detach().to("cpu", torch.float64).tolist()
    return tuple(Keyframe(i, round(y, 4), round(p, 4), round(r, 4), round(d, 6)) for i, (y, p, r, d) in enumerate(rows))


def resolve_length(frames: int, follow: int | None, spec: TrajectorySpec | None = None) -> int:
    """A node's frame count: ``frames`` if > 0, else the connected audio's (``follow``), else the
    keyframes' own length; raise ValueError when none is known."""
    if frames > 0:
        return frames
    if follow is not None:
        return follow
    own = natural_length(spec)
    if own is not None:
        return own
    raise ValueError("frames is 0 (follow the audio) but no audio features are connected and there are no "
                     "keyframes to take a length from; connect STARCaster Audio Features or set a frame count")
