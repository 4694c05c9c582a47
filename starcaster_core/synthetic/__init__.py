"""The procedural talking-avatar world: a 3D-ish cartoon head renderer, speech-like audio, the
audio -> mouth ground-truth rule, head motion, whole sequences and on-disk shards.

Pure PyTorch / numpy / librosa (never ComfyUI). Conventions shared with the pack:
expression (T, 3) = (jaw, mouth_width, blink); pose (T, 3) = head (yaw, pitch, roll) degrees;
camera (T, 4) = (yaw_deg, pitch_deg, roll_deg, distance), distance 1.0 = default framing.
"""

from .identity import HAIR_STYLES, IDENTITY_DIM, IdentityParams, sample_identity
from .lipsync import LipSyncRule, frame_count, mouth_from_audio
from .motion import MotionStyle, blink_track, head_motion
from .render import render_frames, render_portrait
from .sequences import orbit_camera, orbit_sequence, talking_sequence
from .shards import ShardDataset, make_sequence, write_shards
from .speech import SAMPLE_RATE, speech_audio

__all__ = [
    "HAIR_STYLES", "IDENTITY_DIM", "IdentityParams", "LipSyncRule", "MotionStyle", "SAMPLE_RATE",
    "ShardDataset", "blink_track", "frame_count", "head_motion", "make_sequence",
    "mouth_from_audio", "orbit_camera", "orbit_sequence", "render_frames", "render_portrait",
    "sample_identity", "speech_audio", "talking_sequence", "write_shards",
]
