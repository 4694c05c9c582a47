"""STARCaster Lip-Sync Conditioning: audio features + identity + strengths."""

from __future__ import annotations

from comfy_api.latest import io

from ..starcaster_core.generate import SpeechConditioning as Speech
from .types import CATEGORY, AudioFeatures, Identity, SpeechConditioning
from .validate import user_errors


class LipSyncConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterLipSyncConditioning",
            display_name="STARCaster Lip-Sync Conditioning",
            category=CATEGORY,
            inputs=[
                AudioFeatures.Input("audio_features"),
                Identity.Input("identity"),
                io.Float.Input("lip_sync_strength", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="How strongly the speech drives the mouth (0 = ignore the audio)"),
                io.Float.Input("motion_intensity", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Head and face motion: 0 = still, 1 = as trained, 2 = lively "
                                       "(also scales the head turns a pose prior draws)"),
            ],
            outputs=[SpeechConditioning.Output(display_name="conditioning")],
        )

    @classmethod
    def execute(cls, audio_features, identity, lip_sync_strength: float, motion_intensity: float) -> io.NodeOutput:
        with user_errors("STARCaster Lip-Sync Conditioning"):
            for name, value, top in (("lip_sync_strength", lip_sync_strength, 3.0),
                                     ("motion_intensity", motion_intensity, 2.0)):
                if not 0.0 <= value <= top:  # also refuses NaN
                    raise ValueError(f"{name} {value} is out of range; use 0 to {top:g} (1.0 = as trained)")
            return io.NodeOutput(Speech(audio_features, identity, lip_sync_strength, motion_intensity))
