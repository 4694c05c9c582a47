"""The pack's own socket types, declared once."""

from comfy_api.latest import io

StarcasterModel = io.Custom("STARCASTER_MODEL")
Identity = io.Custom("STARCASTER_IDENTITY")
AudioFeatures = io.Custom("STARCASTER_AUDIO_FEATURES")
SpeechConditioning = io.Custom("STARCASTER_CONDITIONING")
CameraTrajectory = io.Custom("STARCASTER_CAMERA")

CATEGORY = "STARCaster"
