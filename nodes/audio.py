"""STARCaster Audio Features: core AUDIO -> per-frame features at the chosen fps."""

from __future__ import annotations

from comfy_api.latest import io

from ..starcaster_core.audio import audio_features
from .types import CATEGORY, AudioFeatures, StarcasterModel
from .validate import user_errors

NAME = "STARCaster Audio Features"


class AudioFeaturesNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterAudioFeatures",
            display_name=NAME,
            category=CATEGORY,
            description="Speech features aligned to video frames: ceil(duration x fps) frames, "
                        "never shorter than the audio.",
            inputs=[
                StarcasterModel.Input("model"),
                io.Audio.Input("audio"),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=1.0),
            ],
            outputs=[
                AudioFeatures.Output(display_name="audio_features"),
                io.Int.Output(display_name="frames"),
                io.Float.Output(display_name="fps"),
            ],
        )

    @classmethod
    def execute(cls, model, audio: dict, fps: float) -> io.NodeOutput:
        with user_errors(NAME):
            waveform = audio["waveform"]  # (B, C, S)
            if waveform.ndim != 3 or waveform.shape[0] != 1:
                raise ValueError(f"expected one audio clip [1, channels, samples], got {tuple(waveform.shape)}; "
                                 "connect a single clip (e.g. straight from LoadAudio)")
            feats = audio_features(waveform[0], audio["sample_rate"], fps, model.module.config)
        text = f"{feats.n_frames} frames = ceil({feats.duration:.3f} s x {fps:g} fps)"
        return io.NodeOutput(feats, feats.n_frames, fps, ui={"text": [text]})
