"""STARCaster Camera Trajectory: a preset camera path, and a plot of it."""

from __future__ import annotations

from comfy_api.latest import io

from ..starcaster_core.camera import CameraPreset, plot_trajectory, preset_trajectory

from .types import CATEGORY, AudioFeatures, CameraTrajectory


class CameraTrajectoryNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterCameraTrajectory",
            display_name="STARCaster Camera Trajectory",
            category=CATEGORY,
            description="Per-frame camera (yaw, pitch, roll, distance) for free-viewpoint talking heads.",
            inputs=[
                io.Combo.Input("preset", options=CameraPreset, default=CameraPreset.STATIC),
                io.Float.Input("amplitude", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="1.0 = orbit 30 deg, nod 10 deg, zoom to 0.7"),
                io.Int.Input("frames", default=0, min=0, max=100000,
                             tooltip="0 = follow the connected audio features"),
                AudioFeatures.Input("audio_features", optional=True),
            ],
            outputs=[CameraTrajectory.Output(display_name="camera"), io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, preset: str, amplitude: float, frames: int, audio_features=None) -> io.NodeOutput:
        if frames == 0:
            if audio_features is None:
                raise ValueError("frames is 0 (follow the audio) but no audio features are connected; "
                                 "connect STARCaster Audio Features or set a frame count")
            frames = audio_features.n_frames
        traj = preset_trajectory(CameraPreset(preset), frames, amplitude=amplitude)  # (T, 4)
        return io.NodeOutput(traj, plot_trajectory(traj)[None])
