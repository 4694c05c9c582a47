"""STARCaster Render Video: generates straight into an MP4 (with the speech), one chunk at a time.

For long or large videos: the AR Sampler's IMAGE output holds every frame in memory, this node
holds one chunk. Its VIDEO output plugs into ComfyUI's video nodes (Save Video, Get Video
Components, ...).
"""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import InputImpl, io, ui

from ..starcaster_core.video_writer import StreamingVideoWriter
from .sampler import camera_ui, generated_frames, generation_inputs
from .types import CATEGORY
from .validate import safe_prefix, user_errors

NAME = "STARCaster Render Video"
SUBFOLDER = "starcaster_videos"  # under ComfyUI's output folder, as every file this pack writes


def check_audio(audio: dict, duration: float, fps: float) -> None:
    """The muxed speech must be the speech the features were computed from (same length)."""
    wave = audio.get("waveform") if isinstance(audio, dict) else None
    if wave is None or wave.ndim != 3 or wave.shape[0] != 1 or "sample_rate" not in audio:
        raise ValueError("audio must be one clip of ComfyUI AUDIO (waveform [1, channels, samples]); "
                         "connect the same Load Audio that feeds STARCaster Audio Features")
    rate = audio["sample_rate"]
    if not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
        raise ValueError(f"audio sample rate {rate!r} is not a positive number; connect a Load Audio node")
    seconds = wave.shape[-1] / rate
    if abs(seconds - duration) > 1.0 / fps:
        raise ValueError(f"audio is {seconds:.2f} s but the conditioning was made from {duration:.2f} s of speech; "
                         "connect the same Load Audio to this node and to STARCaster Audio Features")


class RenderVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterRenderVideo",
            display_name=NAME,
            category=CATEGORY,
            description="Generates the video straight into an MP4 with the speech, chunk by chunk: memory stays "
                        "flat however long the audio is.",
            inputs=[
                *generation_inputs(),
                io.Audio.Input("audio", tooltip="The speech, muxed into the file (the same audio as the features)"),
                io.String.Input("filename_prefix", default="starcaster",
                                tooltip="File name (and subfolders) of the MP4 under output/starcaster_videos/"),
            ],
            outputs=[io.Video.Output(display_name="video"), io.Float.Output(display_name="fps")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, conditioning, seed, steps, audio_guidance, identity_guidance, chunk_size, context_window,
                audio, filename_prefix, camera=None, vae=None, shift=1.0) -> io.NodeOutput:
        features = conditioning.features
        with user_errors(NAME):
            prefix = safe_prefix(filename_prefix, SUBFOLDER)  # never leaves output/starcaster_videos/
            check_audio(audio, features.duration, features.fps)
        height, width = model.module.config.pixel_size
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            prefix, folder_paths.get_output_directory(), width, height)
        file = f"{name}_{counter:05}_.mp4"
        path = os.path.join(folder, file)
        try:
            with user_errors(NAME), StreamingVideoWriter(path, features.fps, width, height, audio) as out:
                for _, frames in generated_frames(NAME, model, conditioning, seed, steps, audio_guidance,
                                                  identity_guidance, chunk_size, context_window, camera, vae, shift):
                    out.write(frames)
        except BaseException:  # cancelled or failed: no half-written file left behind
            if os.path.exists(path):
                os.remove(path)
            raise
        preview = ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)])
        return io.NodeOutput(InputImpl.VideoFromFile(path), features.fps,
                             ui={**preview.as_dict(), **camera_ui(conditioning, camera)})
