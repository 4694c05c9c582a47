"""Integration tests against a real ComfyUI: the UI->API converter, the pack's import,
the served templates, and every example workflow rendered end to end."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import requests
from comfy_host import PACK_NAME, ComfyServer, pack_nodes, strip_meta, ui_to_api

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = REPO_ROOT / "workflows"
WORKFLOW_FILES = sorted(WORKFLOW_DIR.glob("*.json"))
log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi"}


def workflow_params() -> list:
    if not WORKFLOW_FILES:
        return [pytest.param(None, id="no-workflows", marks=pytest.mark.skip(reason="no workflows yet"))]
    return [pytest.param(p, id=p.name) for p in WORKFLOW_FILES]


def ui_node(node_id: int, node_type: str, widgets=None, inputs=(), mode: int = 0) -> dict:
    node = {"id": node_id, "type": node_type, "mode": mode, "inputs": list(inputs)}
    if widgets is not None:
        node["widgets_values"] = widgets
    return node


def link_in(name: str, link_id: int, type_: str = "*", widget: bool = False) -> dict:
    entry = {"name": name, "type": type_, "link": link_id}
    if widget:
        entry["widget"] = {"name": name}
    return entry


# -- ui_to_api against the real server's object_info ------------------------------------
def test_tiny_workflow_converts_and_runs(comfy_server: ComfyServer, tiny_ui_workflow, tiny_api_expected):
    api = ui_to_api(tiny_ui_workflow, comfy_server.object_info())
    assert strip_meta(api) == tiny_api_expected
    assert api["4"]["_meta"]["title"] == "Save Image"

    history = comfy_server.run(api, timeout=120)
    files = comfy_server.output_files(history)
    assert [f.name for f in files] == ["tiny_00001_.png"], files
    from PIL import Image

    with Image.open(files[0]) as img:
        assert img.size == (64, 48)  # height came through the PrimitiveInt link
        assert img.convert("RGB").getpixel((3, 3)) == (255, 0, 0)  # not inverted: bypassed


def test_ui_to_api_widget_mapping(comfy_server: ComfyServer):
    info = comfy_server.object_info()
    links = [
        [1, 10, 0, 2, 0, "MODEL"],
        [2, 11, 0, 2, 1, "CONDITIONING"],
        [3, 11, 0, 2, 2, "CONDITIONING"],
        [4, 12, 0, 2, 3, "LATENT"],
        [5, 20, 0, 22, 1, "AUDIO"],
        [6, 21, 0, 22, 0, "IMAGE"],
        [7, 22, 0, 23, 0, "VIDEO"],
    ]
    nodes = [
        ui_node(10, "CheckpointLoaderSimple", ["model.safetensors"]),
        ui_node(11, "CLIPTextEncode", ["a face"]),
        ui_node(12, "EmptyLatentImage", [64, 64, 1]),
        # the seed's "control_after_generate" value must be skipped, not shift the rest
        ui_node(2, "KSampler", [7, "randomize", 12, 6.5, "euler", "karras", 0.5], [
            link_in("model", 1), link_in("positive", 2), link_in("negative", 3),
            link_in("latent_image", 4)]),
        # upload/preview widgets add trailing values the server must not see
        ui_node(20, "LoadAudio", ["voice.wav", None, ""]),
        ui_node(21, "LoadImage", ["face.png", "image"]),
        # V3 float widget + optional link input; V3 "COMBO" specs
        ui_node(22, "CreateVideo", [25], [link_in("images", 6), link_in("audio", 5)]),
        ui_node(23, "SaveVideo", ["video/starcaster", "auto", "auto"], [link_in("video", 7)]),
        ui_node(24, "EmptyImage", {"width": 8, "height": 4, "batch_size": 2, "color": 1}),
    ]  # fmt: skip
    api = strip_meta(ui_to_api({"nodes": nodes, "links": links}, info))
    assert api["2"]["inputs"] == {
        "seed": 7, "steps": 12, "cfg": 6.5, "sampler_name": "euler", "scheduler": "karras",
        "denoise": 0.5, "model": ["10", 0], "positive": ["11", 0], "negative": ["11", 0],
        "latent_image": ["12", 0],
    }  # fmt: skip
    assert api["20"]["inputs"] == {"audio": "voice.wav"}
    assert api["21"]["inputs"] == {"image": "face.png"}
    assert api["22"]["inputs"] == {"fps": 25, "images": ["21", 0], "audio": ["20", 0]}
    assert api["23"]["inputs"] == {
        "filename_prefix": "video/starcaster",
        "format": "auto",
        "codec": "auto",
        "video": ["22", 0],
    }
    assert api["24"]["inputs"] == {"width": 8, "height": 4, "batch_size": 2, "color": 1}


def test_ui_to_api_object_links_and_dead_ends(comfy_server: ComfyServer):
    info = comfy_server.object_info()
    workflow = {
        "nodes": [
            ui_node(1, "EmptyImage", [8, 8, 1, 0]),
            ui_node(2, "ImageInvert", None, [link_in("image", 1, "IMAGE")], mode=2),  # muted
            ui_node(3, "ImageInvert", None, [link_in("image", 2, "IMAGE")], mode=4),  # bypassed
            ui_node(4, "SaveImage", ["x"], [link_in("images", 3, "IMAGE")]),
            ui_node(5, "SaveImage", ["y"], [link_in("images", 4, "IMAGE")]),
        ],
        "links": [  # the schema-1 object form
            {"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"},
            {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"},
            {"id": 3, "origin_id": 3, "origin_slot": 0, "target_id": 4, "target_slot": 0, "type": "IMAGE"},
            {"id": 4, "origin_id": 1, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "IMAGE"},
        ],
    }
    api = strip_meta(ui_to_api(workflow, info))
    assert sorted(api) == ["1", "4", "5"]
    assert api["4"]["inputs"] == {"filename_prefix": "x"}  # a muted source leaves it unlinked
    assert api["5"]["inputs"] == {"filename_prefix": "y", "images": ["1", 0]}


def test_ui_to_api_rejects_unknown_nodes(comfy_server: ComfyServer):
    with pytest.raises(KeyError, match="NotARealNode"):
        ui_to_api({"nodes": [ui_node(1, "NotARealNode", [1])], "links": []}, comfy_server.object_info())


# -- the pack inside ComfyUI ------------------------------------------------------------
def test_pack_imports_cleanly(comfy_server: ComfyServer, repo_root: Path):
    if not (repo_root / "__init__.py").is_file():
        pytest.skip("the pack has no __init__.py yet")
    log = comfy_server.log_text()
    problems = [
        line for line in log.splitlines()
        if PACK_NAME in line and ("IMPORT FAILED" in line or "Cannot import" in line
                                  or "comfy_entrypoint" in line)
    ]  # fmt: skip
    assert not problems, "\n".join(problems) + "\n--- server log tail ---\n" + comfy_server.log_tail(80)
    assert pack_nodes(comfy_server.object_info()), "the pack imported but registered no nodes"


def test_workflow_templates_are_served(comfy_server: ComfyServer):
    listed = comfy_server.get_json("/api/workflow_templates")
    # only top-level workflows/*.json count; workflows/inputs/ must not show up
    assert sorted(listed.get(PACK_NAME, [])) == sorted(p.stem for p in WORKFLOW_FILES), listed
    for path in WORKFLOW_FILES:
        r = requests.get(f"{comfy_server.url}/api/workflow_templates/{PACK_NAME}/{path.name}", timeout=30)
        assert r.status_code == 200, path.name
        assert r.json() == json.loads(path.read_text())


# -- every example workflow, end to end -------------------------------------------------
def audio_inputs(api: dict, object_info: dict) -> list[str]:
    """File names that audio-upload widgets (LoadAudio and friends) of the prompt reference."""
    names = []
    for node in api.values():
        info = object_info[node["class_type"]]
        for group in ("required", "optional"):
            for name, spec in ((info.get("input") or {}).get(group) or {}).items():
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if opts.get("audio_upload") and isinstance(node["inputs"].get(name), str):
                    names.append(node["inputs"][name])
    return names


def audio_duration(path: Path) -> float:
    try:
        import soundfile

        return soundfile.info(str(path)).duration
    except Exception:  # a format libsndfile cannot read
        import librosa

        return librosa.get_duration(path=str(path))


def probe_video(path: Path) -> tuple[int, float, int]:
    """(decoded video frames, fps from average_rate, number of audio streams)."""
    import av

    with av.open(str(path)) as container:
        assert container.streams.video, f"{path.name} has no video stream"
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        n_audio = len(container.streams.audio)
        frames = sum(1 for _ in container.decode(video=0))
    return frames, fps, n_audio


@pytest.mark.timeout(420)
@pytest.mark.parametrize("workflow_path", workflow_params())
def test_workflow_renders_video_with_audio(
    workflow_path: Path, comfy_server: ComfyServer, workflow_inputs, artifacts_dir: Path
):
    info = comfy_server.object_info()
    api = ui_to_api(json.loads(workflow_path.read_text()), info)
    audio_names = sorted(set(audio_inputs(api, info)))
    assert len(audio_names) == 1, f"expected one input audio file, found {audio_names}"
    source_audio = WORKFLOW_DIR / "inputs" / audio_names[0]
    assert source_audio.is_file(), f"{audio_names[0]} is not in workflows/inputs/"
    duration = audio_duration(source_audio)

    history = comfy_server.run(api, timeout=300)
    videos = [p for p in comfy_server.output_files(history) if p.suffix.lower() in VIDEO_SUFFIXES]
    assert videos, f"no video among the outputs: {history.get('outputs')}"
    for i, video in enumerate(videos):
        assert video.is_file(), video
        shutil.copyfile(video, artifacts_dir / f"{workflow_path.stem}_{i}{video.suffix}")
        frames, fps, n_audio = probe_video(video)
        log.info("%s: %d frames at %s fps, audio %.4fs", video.name, frames, fps, duration)
        assert n_audio >= 1, f"{video.name} has no audio stream"
        expected = math.ceil(duration * fps - 1e-6)
        assert frames == expected, (
            f"{video.name}: {frames} frames at {fps} fps, but the {duration:.4f}s input audio "
            f"needs ceil(duration * fps) = {expected}"
        )
