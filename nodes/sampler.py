"""STARCaster AR Sampler: chunk-by-chunk generation with progress, previews and cancel."""

from __future__ import annotations

from collections.abc import Iterator

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import io
from PIL import Image

from ..starcaster_core.generate import (
    MAX_CHUNK,
    MAX_CONTEXT,
    GenerateSettings,
    check_settings,
    generate,
    resolve_camera,
)
from .types import CATEGORY, CameraTrajectory, SpeechConditioning, StarcasterModel
from .validate import compile_errors, user_errors

PREVIEW_SIZE = 256
NAME = "STARCaster AR Sampler"
DEFAULTS = GenerateSettings()  # the widgets' defaults are the core's


def to_image(chunk: torch.Tensor) -> torch.Tensor:
    """(K, 3, H, W) in [-1, 1] -> ComfyUI IMAGE (K, H, W, 3) in [0, 1] on the CPU."""
    return ((chunk.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu()


def preview(frame: torch.Tensor) -> tuple[str, Image.Image, int]:
    """A (3, H, W) frame in [-1, 1] as the ("JPEG", image, size) preview ComfyUI's hook sends."""
    pixels = (to_image(frame[None])[0].numpy() * 255).round().astype("uint8")
    return "JPEG", Image.fromarray(pixels).resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.NEAREST), PREVIEW_SIZE


def generation_inputs() -> list:
    """The inputs every generating node shares (the AR Sampler's, in its order)."""
    return [
        StarcasterModel.Input("model"),
        SpeechConditioning.Input("conditioning"),
        io.Int.Input("seed", default=DEFAULTS.seed, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True),
        io.Int.Input("steps", default=DEFAULTS.steps, min=1, max=100,
                     tooltip="Euler flow steps per chunk. The embedded model draws the same at 2 as at 4 or 8 "
                             "(measured); models you train may want more"),
        io.Float.Input("audio_guidance", default=DEFAULTS.audio_guidance, min=0.0, max=10.0, step=0.1,
                       tooltip="Classifier-free guidance on the audio (1 = off)"),
        io.Float.Input("identity_guidance", default=DEFAULTS.identity_guidance, min=0.0, max=10.0, step=0.1,
                       tooltip="Classifier-free guidance on the identity (1 = off)"),
        io.Int.Input("chunk_size", default=DEFAULTS.chunk, min=1, max=MAX_CHUNK,
                     tooltip="Frames generated per step of the AR loop"),
        io.Int.Input("context_window", default=DEFAULTS.context, min=0, max=MAX_CONTEXT,
                     tooltip="Earlier frames each chunk sees (rolling KV cache; memory stays flat)"),
        CameraTrajectory.Input("camera", optional=True),
        io.Vae.Input("vae", optional=True, tooltip="Needed only by latent-space models (base/large)"),
        io.Float.Input("shift", default=DEFAULTS.shift, min=0.1, max=10.0, step=0.1, optional=True,
                       tooltip="Timestep shift: above 1 spends the steps nearer pure noise. On the demo "
                               "model 2 lip-syncs short clips better; 1 holds up better over minutes"),
    ]


def generated_frames(node: str, model, conditioning, seed, steps, audio_guidance, identity_guidance, chunk_size,
                     context_window, camera=None, vae=None, shift=1.0) -> Iterator[tuple[int, torch.Tensor]]:
    """Checks the inputs, then yields (first frame index, frames (K, H, W, 3) in 0..1 on the
    CPU) chunk by chunk, with ComfyUI's progress bar, previews and cancel button."""
    config = model.module.config
    with user_errors(node):
        if config.space == "latent" and vae is None:
            raise ValueError(f"model '{model.name}' works in a VAE latent space; connect the matching VAE")
        settings = GenerateSettings(seed, steps, shift, audio_guidance, identity_guidance, chunk_size, context_window)
        check_settings(settings)
    bar = comfy.utils.ProgressBar(conditioning.features.n_frames * steps)

    def on_step(info: dict) -> None:
        done = info["start"] * steps + (info["i"] + 1) * info["denoised"].shape[2]
        shown = preview(info["denoised"][0, :, 0]) if config.space == "pixel" else None
        bar.update_absolute(done, preview=shown)

    device = model.load()
    with torch.inference_mode(), user_errors(node), compile_errors():
        for start, chunk in generate(model.module, conditioning, camera, settings, device=device, callback=on_step,
                                     interrupt=comfy.model_management.throw_exception_if_processing_interrupted):
            yield start, (to_image(chunk) if vae is None else vae.decode(chunk).cpu())


def camera_ui(conditioning, camera) -> dict:
    """The node's UI text and the camera path that was honoured, row by row."""
    n_frames = conditioning.features.n_frames
    used = resolve_camera(camera, n_frames)
    return {"text": [f"{n_frames} frames at {conditioning.features.fps:g} fps"],
            "camera": [[round(v, 3) for v in row] for row in used.tolist()]}


class ARSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="STARCasterARSampler",
            display_name=NAME,
            category=CATEGORY,
            description="Generates the talking-head video chunk after chunk (KV cache), for audio of any length.",
            inputs=generation_inputs(),
            outputs=[io.Image.Output(display_name="images"), io.Float.Output(display_name="fps")],
        )

    @classmethod
    def execute(cls, model, conditioning, seed, steps, audio_guidance, identity_guidance, chunk_size,
                context_window, camera=None, vae=None, shift=1.0) -> io.NodeOutput:
        video = None  # (T, H, W, 3), filled chunk by chunk: no second copy of a long video
        for start, frames in generated_frames(NAME, model, conditioning, seed, steps, audio_guidance, identity_guidance,
                                              chunk_size, context_window, camera, vae, shift):
            if video is None:
                video = torch.empty((conditioning.features.n_frames, *frames.shape[1:]), dtype=frames.dtype)
            video[start : start + frames.shape[0]] = frames
        return io.NodeOutput(video, conditioning.features.fps, ui=camera_ui(conditioning, camera))
