"""STARCaster Render Video through a real ComfyUI: the MP4 it streams chunk by chunk holds the
same video as the AR Sampler's IMAGE output, plus the speech; bad inputs fail cleanly."""

from __future__ import annotations

import av
import numpy as np
import pytest
from comfy_host import ComfyServer
from PIL import Image
from test_bad_inputs import (
    assert_clean_error,
    assert_recovers,
    expected_frames,
    load_audio,
    run_error,
    run_ok,
    speech_like,
    talking_graph,
    write_audio,
)

SETTINGS = {"seed": 3, "steps": 2, "audio_guidance": 1.0, "identity_guidance": 1.0, "chunk_size": 4,
            "context_window": 8}


def render_graph(audio_name: str, muxed: dict | None = None, prefix: str = "test/render") -> dict:
    """The shared talking graph with the sampler's frames saved as PNGs and a Render Video node
    with the same settings; `muxed` is the audio node the render muxes (default: the same)."""
    prompt = talking_graph(load_audio(audio_name), seed=SETTINGS["seed"], steps=SETTINGS["steps"],
                           chunk=SETTINGS["chunk_size"], context=SETTINGS["context_window"])
    prompt["png"] = {"class_type": "SaveImage", "inputs": {"images": ["sampler", 0], "filename_prefix": "sc_render"}}
    if muxed is not None:
        prompt["muxed"] = muxed
    prompt["render"] = {"class_type": "STARCasterRenderVideo", "inputs": {
        "model": ["model", 0], "conditioning": ["cond", 0], **SETTINGS,
        "audio": ["muxed" if muxed is not None else "audio", 0], "filename_prefix": prefix}}
    return prompt


def decode(path) -> tuple[np.ndarray, float, float]:
    """(frames (T, H, W, 3) in 0..1, fps, seconds of audio) of an MP4."""
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)]) / 255.0
    with av.open(str(path)) as container:
        audio = sum(f.samples / f.sample_rate for f in container.decode(audio=0))
    return frames, fps, audio


@pytest.mark.timeout(300)
def test_render_video_streams_the_samplers_video_with_the_speech(comfy_server: ComfyServer):
    name = write_audio(comfy_server, "starcaster_render.wav", speech_like(1.3, 16000), 16000)
    entry = run_ok(comfy_server, render_graph(name))
    [mp4] = [comfy_server.output_dir / i["subfolder"] / i["filename"] for i in entry["outputs"]["render"]["images"]]
    assert mp4.suffix == ".mp4" and mp4.parent == comfy_server.output_dir / "starcaster_videos" / "test", mp4
    frames, fps, audio_seconds = decode(mp4)
    n = expected_frames(int(1.3 * 16000), 16000, 25.0)
    assert fps == 25.0 and frames.shape == (n, 64, 64, 3), (fps, frames.shape)
    assert abs(audio_seconds - 1.3) < 0.05, f"the muxed speech lasts {audio_seconds:.3f} s, not 1.3 s"

    pngs = sorted(entry["outputs"]["png"]["images"], key=lambda i: i["filename"])
    sampler = np.stack([np.asarray(Image.open(comfy_server.output_dir / i["subfolder"] / i["filename"]))
                        for i in pngs]) / 255.0  # (T, 64, 64, 3): the AR Sampler's frames
    assert sampler.shape == frames.shape
    same = np.abs(frames - sampler).mean()
    assert same < 0.05, f"mp4 vs sampler frames differ by {same:.4f} on average (H.264 alone: about 0.017)"
    # In order? H.264 at 64x64 costs half of a frame-to-frame change, so compare what changes: each
    # video's frames minus its mean frame, correlated in place and one frame off (a mix-up)
    moving, sampled = frames - frames.mean(axis=0), sampler - sampler.mean(axis=0)
    in_place, one_off = (np.corrcoef(moving[k:].ravel(), sampled[: len(sampled) - k].ravel())[0, 1] for k in (0, 1))
    assert in_place > 0.8 and in_place > one_off + 0.15, (in_place, one_off)


@pytest.mark.timeout(300)
def test_render_video_refuses_other_audio_and_unsafe_paths(comfy_server: ComfyServer):
    name = write_audio(comfy_server, "starcaster_render_a.wav", speech_like(0.4, 16000), 16000)
    other = write_audio(comfy_server, "starcaster_render_b.wav", speech_like(2.0, 16000), 16000)
    err = run_error(comfy_server, render_graph(name, muxed=load_audio(other)))
    assert_clean_error(err, "STARCasterRenderVideo", r"audio is 2\.00 s but the conditioning was made from 0\.40 s")
    err = run_error(comfy_server, render_graph(name, prefix="../../escape"))
    assert_clean_error(err, "STARCasterRenderVideo", r"would leave output/starcaster_videos/")
    assert not list(comfy_server.output_dir.parent.glob("escape*")), "a file escaped the output folder"
    assert_recovers(comfy_server)
