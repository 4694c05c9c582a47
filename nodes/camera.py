"""Camera trajectory nodes: a preset plus editable keyframes (js/camera_editor.js), a plot of it,
and saving/loading trajectories as JSON (output/starcaster_cameras/, input/)."""

from __future__ import annotations

import json
import os

import folder_paths
from comfy_api.latest import io

from ..starcaster_core.camera import CameraPreset, PresetSpec, as_preset, plot_trajectory
from ..starcaster_core.camera_json import (
    parse_spec,
    render_trajectory,
    resolve_length,
    trajectory_from_json,
    trajectory_to_json,
    trajectory_to_keyframes,
)
from .types import CATEGORY, AudioFeatures, CameraTrajectory
from .validate import safe_prefix, user_errors

SUBFOLDER = "starcaster_cameras"  # under output/ (saved) and optionally under input/
OUTPUT_TAG = " [output]"
KEYFRAMES_TOOLTIP = ("Trajectory JSON, edited with the curve editor below: keyframes (frame -> yaw, pitch, roll, "
                     "distance) layered on the preset (angles add, distance multiplies). Empty = the preset alone.")


def _ui_camera(traj) -> dict:
    """What the editor overlays after a run: the exact per-frame camera."""
    return {"camera": [[round(v, 3) for v in row] for row in traj.tolist()]}


class CameraTrajectoryNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterCameraTrajectory",
            display_name="STARCaster Camera Trajectory",
            category=CATEGORY,
            description="Per-frame camera (yaw, pitch, roll, distance) for free-viewpoint talking heads: "
                        "a preset plus keyframes drawn in the node's curve editor.",
            inputs=[
                io.Combo.Input("preset", options=CameraPreset, default=CameraPreset.STATIC),
                io.Float.Input("amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="1.0 = orbit 30 deg, nod 10 deg, zoom to 0.7"),
                io.Float.Input("speed", default=1.0, min=0.05, max=20.0, step=0.05,
                               tooltip="Cycles per clip: sweeps (2 = out and back), nods, shake frequency"),
                io.Boolean.Input("ease", default=True, tooltip="Start and stop at rest"),
                io.Boolean.Input("loop", default=False, tooltip="The last frame meets the first"),
                # not named "seed": the frontend would add a "control after generate" that randomizes it
                io.Int.Input("shake_seed", default=0, min=0, max=0xFFFFFFFF,
                             tooltip="Noise of the handheld preset (fixed, so a rerun keeps the same camera)"),
                io.Int.Input("frames", default=0, min=0, max=100000,
                             tooltip="0 = follow the connected audio features (else the last keyframe + 1)"),
                io.String.Input("keyframes", default="", multiline=False, tooltip=KEYFRAMES_TOOLTIP),
                AudioFeatures.Input("audio_features", optional=True),
            ],
            outputs=[CameraTrajectory.Output(display_name="camera"), io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, preset: str, amplitude: float, speed: float, ease: bool, loop: bool, shake_seed: int, frames: int,
                keyframes: str, audio_features=None) -> io.NodeOutput:
        follow = None if audio_features is None else audio_features.n_frames
        n = resolve_length(frames, follow, parse_spec(keyframes))
        spec = PresetSpec(as_preset(preset), amplitude, speed, ease, loop, shake_seed)
        traj = render_trajectory(spec, keyframes, n)  # (T, 4)
        return io.NodeOutput(traj, plot_trajectory(traj)[None], ui=_ui_camera(traj))


class SaveCameraTrajectory(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterSaveCameraTrajectory",
            display_name="STARCaster Save Camera Trajectory",
            category=CATEGORY,
            description=f"Saves the per-frame camera as keyframe JSON in output/{SUBFOLDER}/.",
            is_output_node=True,
            inputs=[CameraTrajectory.Input("camera"), io.String.Input("filename_prefix", default="camera")],
            outputs=[],
        )

    @classmethod
    def execute(cls, camera, filename_prefix: str) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        with user_errors("STARCaster Save Camera Trajectory"):
            prefix = safe_prefix(filename_prefix, SUBFOLDER)  # never leaves output/starcaster_cameras/
            text = trajectory_to_json(trajectory_to_keyframes(camera)) + "\n"  # fails before any file exists
        folder, name, counter, _, _ = folder_paths.get_save_image_path(prefix, out_dir)
        path = os.path.join(folder, f"{name}_{counter:05}_.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        rel = os.path.relpath(path, folder_paths.get_output_directory()).replace(os.sep, "/")
        return io.NodeOutput(ui={"text": [f"saved {rel}"], "files": [rel + OUTPUT_TAG]})


def camera_files() -> list[str]:
    """JSON files in input/ (top level and input/starcaster_cameras/) and output/starcaster_cameras/."""
    found = []
    for base, tag in ((folder_paths.get_input_directory(), ""), (folder_paths.get_output_directory(), OUTPUT_TAG)):
        subdirs = ("", SUBFOLDER) if not tag else (SUBFOLDER,)
        for sub in subdirs:
            folder = os.path.join(base, sub)
            if os.path.isdir(folder):
                found += [f"{sub}/{f}".lstrip("/") + tag for f in sorted(os.listdir(folder))
                          if f.lower().endswith(".json") and os.path.isfile(os.path.join(folder, f))]
    return found


def resolve_camera_file(name: str) -> str:
    """The path of a listed camera file; refuses names that leave input/ or output/starcaster_cameras/."""
    if name.endswith(OUTPUT_TAG):
        root = os.path.join(folder_paths.get_output_directory(), SUBFOLDER)
        rel = name[: -len(OUTPUT_TAG)]
        rel = rel[len(SUBFOLDER) + 1:] if rel.startswith(SUBFOLDER + "/") else rel
    else:
        root, rel = folder_paths.get_input_directory(), name
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath((root, path)) != root or not path.lower().endswith(".json"):
        raise ValueError(f"camera file {name!r} is outside {root} or not a .json file; pick a file from the list "
                         f"(put your own in ComfyUI's input/ folder)")
    if not os.path.isfile(path):
        raise ValueError(f"camera file {name!r} not found ({path}); refresh the node list or save one first")
    return path


class LoadCameraTrajectory(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterLoadCameraTrajectory",
            display_name="STARCaster Load Camera Trajectory",
            category=CATEGORY,
            description=f"Loads a trajectory JSON (keyframes or a preset) from input/ or output/{SUBFOLDER}/.",
            inputs=[
                io.Combo.Input("camera_file", options=camera_files(),
                               tooltip=f"*.json in input/, input/{SUBFOLDER}/ or output/{SUBFOLDER}/"),
                io.Int.Input("frames", default=0, min=0, max=100000,
                             tooltip="0 = follow the connected audio features, else the file's last keyframe + 1"),
                AudioFeatures.Input("audio_features", optional=True),
            ],
            outputs=[CameraTrajectory.Output(display_name="camera"), io.Image.Output(display_name="plot"),
                     io.String.Output(display_name="keyframes",
                                      tooltip="The file's JSON: wire it into a Camera Trajectory's keyframes")],
        )

    @classmethod
    def fingerprint_inputs(cls, camera_file: str, **kwargs) -> float:
        try:
            return os.path.getmtime(resolve_camera_file(camera_file))
        except ValueError:
            return float("nan")  # never cached: execute reports the error

    @classmethod
    def execute(cls, camera_file: str, frames: int, audio_features=None) -> io.NodeOutput:
        with open(resolve_camera_file(camera_file), encoding="utf-8") as f:
            text = f.read()
        try:
            spec = trajectory_from_json(text)
        except ValueError as err:
            raise ValueError(f"camera file {camera_file!r}: {err}") from None
        follow = None if audio_features is None else audio_features.n_frames
        n = resolve_length(frames, follow, spec)
        traj = render_trajectory(PresetSpec(), text, n)  # static preset + the file = the file
        return io.NodeOutput(traj, plot_trajectory(traj)[None], json.dumps(json.loads(text)), ui=_ui_camera(traj))
