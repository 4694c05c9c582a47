"""Hard inputs through a real ComfyUI (issue 7, part 1).

Every unusable input ends in a clean error whose text names the node and says what to do;
unusual but usable inputs (silence, 1 sample, 8/96 kHz, 6 channels, grayscale/RGBA portraits,
10 minutes) succeed with ceil(duration x fps) frames; and after each case the next valid
prompt on the same server succeeds. Bad checkpoint and identity files are in test_security.py
(with the proof that nothing is unpickled). The helpers here are shared by test_invariants.py
and test_security.py.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import torch
from comfy_host import ComfyServer

DEFAULT_MODEL = "starcaster-demo (embedded)"
PORTRAIT = Path(__file__).resolve().parent.parent / "workflows" / "inputs" / "starcaster_portrait.png"
# An actionable message tells the user what to do: it contains one of these verbs.
ACTION = re.compile(
    r"\b(use|set|connect|load|pick|put|save|make|re-?export|re-?download|re-?train|choose|remove|install|"
    r"normalise|type|press|sort|give|add|lower|update|split|try|expected)\b", re.I)
_seeds = itertools.count(1000)


# -- talking to the server -----------------------------------------------------------------
@dataclass
class NodeError:
    """A prompt's failure: rejected at validation, or raised while a node executed."""

    kind: str  # "validation" or "execution"
    node_id: str
    node_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} error in node {self.node_id} ({self.node_type}): {self.message}"


def history_of(server: ComfyServer, prompt_id: str, timeout: float = 180.0) -> dict:
    """Poll /history until the prompt finished (success, error or interrupt)."""
    t0 = time.monotonic()
    while True:
        entry = server.get_json(f"/history/{prompt_id}").get(prompt_id)
        status = (entry or {}).get("status") or {}
        if status.get("completed") or status.get("status_str") == "error":
            return entry
        assert server._proc is not None and server._proc.poll() is None, f"ComfyUI died:\n{server.log_tail()}"
        if time.monotonic() - t0 > timeout:
            requests.post(server.url + "/interrupt", timeout=10)
            raise TimeoutError(f"prompt {prompt_id} still running after {timeout:.0f}s:\n{server.log_tail()}")
        time.sleep(0.1)


def post_prompt(server: ComfyServer, prompt: dict) -> requests.Response:
    return requests.post(server.url + "/prompt", json={"prompt": prompt, "client_id": server.client_id}, timeout=60)


def run_ok(server: ComfyServer, prompt: dict, timeout: float = 180.0) -> dict:
    r = post_prompt(server, prompt)
    assert r.ok and not r.json().get("node_errors"), f"prompt rejected: {r.text[:3000]}"
    entry = history_of(server, r.json()["prompt_id"], timeout)
    assert entry["status"]["status_str"] == "success", f"prompt failed: {entry['status']}\n{server.log_tail()}"
    return entry


def run_error(server: ComfyServer, prompt: dict, timeout: float = 180.0) -> NodeError:
    """Queue a prompt that must fail; return the failure as the server reported it."""
    r = post_prompt(server, prompt)
    body = r.json()
    if not r.ok or body.get("node_errors"):
        assert body.get("node_errors"), f"rejected without node errors: {body}"
        node_id, info = next(iter(body["node_errors"].items()))
        text = "; ".join(f"{e['message']}: {e.get('details', '')}" for e in info["errors"])
        return NodeError("validation", node_id, info["class_type"], text)
    entry = history_of(server, body["prompt_id"], timeout)
    for event, data in entry["status"]["messages"]:
        if event == "execution_error":
            return NodeError("execution", data["node_id"], data["node_type"], data["exception_message"].strip())
    raise AssertionError(f"the prompt did not fail: {entry['status']}")


def assert_clean_error(err: NodeError, node_type: str, pattern: str, *, actionable: bool = True) -> None:
    assert err.node_type == node_type, f"wrong node blamed: {err}"
    assert re.search(pattern, err.message, re.I), f"message does not match {pattern!r}: {err}"
    assert "Traceback" not in err.message, err
    if actionable:
        assert ACTION.search(err.message), f"the message does not say what to do: {err}"


# -- prompts -------------------------------------------------------------------------------
def load_audio(name: str) -> dict:
    return {"class_type": "LoadAudio", "inputs": {"audio": name}}


def empty_audio(seconds: float, sample_rate: int = 44100, channels: int = 2) -> dict:
    return {"class_type": "EmptyAudio", "inputs": {"duration": seconds, "sample_rate": sample_rate,
                                                   "channels": channels}}


def talking_graph(audio: dict, *, fps: float = 25.0, seed: int | None = None, steps: int = 1, chunk: int = 8,
                  context: int = 8, model_name: str = DEFAULT_MODEL, identity: dict | None = None,
                  extra: dict | None = None, sampler_extra: dict | None = None) -> dict:
    """model + audio -> features -> conditioning (+ identity) -> sampler -> frame count.

    `identity` is a node whose output 0 is an identity (default: a random one); `extra` adds
    nodes (e.g. the identity's image source). PreviewAny "count" shows the sampler's batch size.
    """
    seed = next(_seeds) if seed is None else seed
    prompt = {
        "model": {"class_type": "STARCasterModelLoader", "inputs": {"model_name": model_name, "precision": "auto"}},
        "audio": audio,
        "features": {"class_type": "STARCasterAudioFeatures",
                     "inputs": {"model": ["model", 0], "audio": ["audio", 0], "fps": fps}},
        "identity": identity or {"class_type": "STARCasterRandomIdentity",
                                 "inputs": {"model": ["model", 0], "seed": seed}},
        "cond": {"class_type": "STARCasterLipSyncConditioning",
                 "inputs": {"audio_features": ["features", 0], "identity": ["identity", 0],
                            "lip_sync_strength": 1.0, "motion_intensity": 1.0}},
        "sampler": {"class_type": "STARCasterARSampler",
                    "inputs": {"model": ["model", 0], "conditioning": ["cond", 0], "seed": seed, "steps": steps,
                               "audio_guidance": 1.0, "identity_guidance": 1.0, "chunk_size": chunk,
                               "context_window": context, **(sampler_extra or {})}},
        "size": {"class_type": "GetImageSize", "inputs": {"image": ["sampler", 0]}},
        "count": {"class_type": "PreviewAny", "inputs": {"source": ["size", 2]}},
    }
    prompt.update(extra or {})
    return prompt


def frames_of(entry: dict) -> int:
    return int(entry["outputs"]["count"]["text"][0])


def expected_frames(n_samples: int, sample_rate: int, fps: float) -> int:
    return max(1, math.ceil(n_samples / sample_rate * fps - 1e-9))


def write_audio(server: ComfyServer, name: str, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> str:
    """(S,) or (C, S) float samples -> a file in the server's input dir; returns its name."""
    data = np.asarray(data, dtype=np.float32)
    sf.write(server.input_dir / name, data.T if data.ndim == 2 else data, sample_rate, subtype=subtype)
    return name


def speech_like(seconds: float, sample_rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated harmonics: (C, S) in [-0.5, 0.5]."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), start=1))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + seed)
    wav = 0.2 * voice * envelope
    return np.stack([wav * (0.5 + 0.5 * c / max(1, channels - 1)) for c in range(channels)]).astype(np.float32)


def assert_recovers(server: ComfyServer) -> None:
    """The next valid prompt on the same server succeeds with the right frame count."""
    name = "starcaster_ok.wav"
    if not (server.input_dir / name).exists():
        write_audio(server, name, speech_like(0.1, 16000), 16000)
    entry = run_ok(server, talking_graph(load_audio(name)))
    assert frames_of(entry) == expected_frames(1600, 16000, 25.0)


def install_tiny_checkpoint(server: ComfyServer, name: str) -> str:
    """The 2-layer, 16x16 `tiny` preset as a user checkpoint in models/starcaster/: a model ~100x
    cheaper than the demo one, for tests whose subject is the pipeline, not the pictures."""
    from starcaster_core.checkpoint import save_checkpoint
    from starcaster_core.config import PRESETS
    from starcaster_core.model import STARCaster

    folder = server.base_dir / "models" / "starcaster"
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = STARCaster(PRESETS["tiny"])
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.1)  # untrained adaLN-Zero models output constants: randomise
    save_checkpoint(model, folder / name)
    return name


# -- audio ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["silent_file", "silent_empty_audio", "one_sample", "8kHz", "96kHz", "6_channels"])
def test_unusual_but_valid_audio_succeeds(comfy_server: ComfyServer, case: str):
    rate, fps = 16000, 25.0
    if case == "silent_empty_audio":
        audio, n, rate = empty_audio(0.3, 44100, 2), 13230, 44100
    else:
        wav = {
            "silent_file": lambda: np.zeros((1, 4800)),
            "one_sample": lambda: np.full((1, 1), 0.25),
            "8kHz": lambda: speech_like(0.3, 8000),
            "96kHz": lambda: speech_like(0.3, 96000),
            "6_channels": lambda: speech_like(0.3, 16000, channels=6),
        }[case]()
        rate = {"8kHz": 8000, "96kHz": 96000}.get(case, 16000)
        audio, n = load_audio(write_audio(comfy_server, f"valid_{case}.wav", wav, rate)), wav.shape[-1]
    entry = run_ok(comfy_server, talking_graph(audio, fps=fps))
    assert frames_of(entry) == expected_frames(n, rate, fps), case


def nan_audio(server: ComfyServer) -> dict:
    wav = speech_like(0.3, 16000)
    wav[0, 100:110] = np.nan
    return load_audio(write_audio(server, "bad_nan.wav", wav, 16000, subtype="FLOAT"))


AUDIO_CASES = {
    # name: (audio node maker, node blamed, message pattern)
    "empty": (lambda s: empty_audio(0.0), "STARCasterAudioFeatures", r"empty \(0 samples\)"),
    "nan": (nan_audio, "STARCasterAudioFeatures", r"NaN"),
    "rate_too_low": (lambda s: empty_audio(0.3, 1000, 1), "STARCasterAudioFeatures", r"sample rate 1000 Hz"),
    "rate_zero": (lambda s: empty_audio(0.3, 0, 1), "STARCasterAudioFeatures", r"(sample rate 0 Hz|empty)"),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_bad_audio_names_the_node_and_the_fix(comfy_server: ComfyServer, case: str):
    make, node, pattern = AUDIO_CASES[case]
    err = run_error(comfy_server, talking_graph(make(comfy_server)))
    assert_clean_error(err, node, pattern)
    assert err.message.startswith("STARCaster Audio Features: "), err
    assert_recovers(comfy_server)


def test_empty_audio_file_is_a_clean_error(comfy_server: ComfyServer):
    """A WAV with 0 frames stops in ComfyUI's own LoadAudio (its message, not ours)."""
    name = write_audio(comfy_server, "bad_empty.wav", np.zeros((1, 0)), 16000)
    err = run_error(comfy_server, talking_graph(load_audio(name)))
    assert_clean_error(err, "LoadAudio", r"no audio frames", actionable=False)
    assert_recovers(comfy_server)


def test_ten_minute_audio_features(comfy_server: ComfyServer):
    """10 minutes of speech: the features node reports 15000 frames at 25 fps, quickly."""
    rate = 16000
    wav = np.tile(speech_like(5.0, rate), (1, 120))  # (1, 9_600_000)
    name = write_audio(comfy_server, "long_10min.wav", wav, rate)
    prompt = {
        "model": {"class_type": "STARCasterModelLoader", "inputs": {"model_name": DEFAULT_MODEL, "precision": "auto"}},
        "audio": load_audio(name),
        "features": {"class_type": "STARCasterAudioFeatures",
                     "inputs": {"model": ["model", 0], "audio": ["audio", 0], "fps": 25.0}},
        "count": {"class_type": "PreviewAny", "inputs": {"source": ["features", 1]}},
    }
    entry = run_ok(comfy_server, prompt, timeout=120)
    assert frames_of(entry) == 15000
    (comfy_server.input_dir / name).unlink()


# -- portraits -----------------------------------------------------------------------------
def portrait_graph(server: ComfyServer, image_nodes: dict, crop: str = "face") -> dict:
    """The talking graph with its identity made from `image_nodes["image"]`."""
    name = "valid_speech.wav"
    if not (server.input_dir / name).exists():
        write_audio(server, name, speech_like(0.3, 16000), 16000)
    identity = {"class_type": "STARCasterIdentityFromImage",
                "inputs": {"model": ["model", 0], "image": ["image", 0], "crop": crop}}
    return talking_graph(load_audio(name), identity=identity, extra=image_nodes)


def load_image(server: ComfyServer, mode: str) -> dict:
    from PIL import Image

    name = f"portrait_{mode}.png"
    with Image.open(PORTRAIT) as img:
        img.convert(mode).save(server.input_dir / name)
    return {"class_type": "LoadImage", "inputs": {"image": name}}


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGBA_channels"])
def test_grayscale_and_rgba_portraits_succeed(comfy_server: ComfyServer, mode: str):
    """LoadImage makes grayscale/RGBA PNGs RGB; JoinImageWithAlpha gives a real 4-channel IMAGE."""
    nodes = {"image": load_image(comfy_server, mode.split("_")[0])}
    if mode == "RGBA_channels":
        nodes = {"loaded": nodes["image"],
                 "image": {"class_type": "JoinImageWithAlpha",
                           "inputs": {"image": ["loaded", 0], "alpha": ["loaded", 1]}}}
    entry = run_ok(comfy_server, portrait_graph(comfy_server, nodes))
    assert frames_of(entry) == 8


def scaled_portrait(server: ComfyServer) -> dict:
    return {"loaded": load_image(server, "RGB"),
            "image": {"class_type": "ImageScale", "inputs": {"image": ["loaded", 0], "upscale_method": "area",
                                                             "width": 16, "height": 16, "crop": "disabled"}}}


def empty_image(size: int = 128, batch: int = 1) -> dict:
    return {"image": {"class_type": "EmptyImage",
                      "inputs": {"width": size, "height": size, "batch_size": batch, "color": 0x808080}}}


IMAGE_CASES = {
    "no_face": (lambda s: empty_image(), "face", r"no face found.*'center'"),
    "16x16": (scaled_portrait, "center", r"16x16 pixels.*at least 64x64"),
    "batch_of_3": (lambda s: empty_image(batch=3), "center", r"got 3 portraits.*ImageFromBatch"),
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_bad_portrait_names_the_node_and_the_fix(comfy_server: ComfyServer, case: str):
    make, crop, pattern = IMAGE_CASES[case]
    err = run_error(comfy_server, portrait_graph(comfy_server, make(comfy_server), crop))
    assert_clean_error(err, "STARCasterIdentityFromImage", pattern)
    assert err.message.startswith("STARCaster Identity (portrait): "), err
    assert_recovers(comfy_server)


# -- sampler settings and camera trajectories ----------------------------------------------
@pytest.mark.parametrize("name,value", [("chunk_size", 0), ("chunk_size", 65), ("context_window", -1),
                                        ("context_window", 257), ("steps", 0)])
def test_out_of_range_settings_are_rejected(comfy_server: ComfyServer, name: str, value: int):
    err = run_error(comfy_server, talking_graph(empty_audio(0.2), sampler_extra={name: value}))
    assert err.kind == "validation", err
    assert_clean_error(err, "STARCasterARSampler", rf"(smaller than min|bigger than max).*{name}", actionable=False)
    assert_recovers(comfy_server)


def camera_node(server: ComfyServer, keyframes: str) -> dict:
    """The camera node with its widgets at their defaults, following the audio, with `keyframes`."""
    groups = server.object_info(refresh=True)["STARCasterCameraTrajectory"]["input"]
    inputs = {name: spec[1]["default"] for group in ("required", "optional") for name, spec in groups[group].items()
              if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]}
    inputs.update(audio_features=["features", 0], keyframes=keyframes)
    return {"class_type": "STARCasterCameraTrajectory", "inputs": inputs}


TRAJECTORY_CASES = {
    "malformed": ('{"version": 1, "keyframes": [{"frame": 0', r"malformed"),
    "out_of_order": ('{"version": 1, "keyframes": [{"frame": 10, "yaw": 5}, {"frame": 3, "yaw": 0}]}',
                     r"out of order"),
}


@pytest.mark.parametrize("case", list(TRAJECTORY_CASES))
def test_bad_trajectory_json_names_the_node_and_the_fix(comfy_server: ComfyServer, case: str):
    text, pattern = TRAJECTORY_CASES[case]
    err = run_error(comfy_server, talking_graph(empty_audio(0.2), extra={"camera": camera_node(comfy_server, text)},
                                                sampler_extra={"camera": ["camera", 0]}))
    assert_clean_error(err, "STARCasterCameraTrajectory", pattern)
    assert_recovers(comfy_server)


# -- the troubleshooting guide lists every message ------------------------------------------
MESSAGE_SOURCES = ["nodes/audio.py", "nodes/identity.py", "nodes/loader.py", "nodes/conditioning.py",
                   "nodes/sampler.py", "nodes/validate.py", "nodes/render.py", "starcaster_core/video_writer.py",
                   "starcaster_core/audio.py", "starcaster_core/identity.py",
                   "starcaster_core/checkpoint.py", "starcaster_core/generate.py"]
# raised only inside a wrapper that reports them as part of another (documented) message, or
# only reachable by calling the core directly
INTERNAL_MESSAGES = ("config is a", "must be {}", "{} = {} is out of range", "expected one RGB image",
                     "checkpoint not found", "{} {} is out of range; use 0 to {} (1.0 = off)")


def message_key(arg) -> str:
    """The first phrase of 3+ words of a raised message, with every {field} as a cut."""
    import ast

    parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
    text = "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in parts)
    if any(k in text for k in INTERNAL_MESSAGES):
        return ""
    for fragment in re.split(r"\{\}|;|\(|\)", text):
        words = fragment.split()
        if len(words) >= 3:
            return " ".join(words[:5]).lstrip(":,. ")
    return ""


def test_troubleshooting_lists_every_message():
    import ast

    root = Path(__file__).resolve().parent.parent
    doc = " ".join((root / "docs" / "troubleshooting.md").read_text().split())
    missing = []
    for rel in MESSAGE_SOURCES:
        for node in ast.walk(ast.parse((root / rel).read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                key = message_key(node.exc.args[0])
                if key and key not in doc:
                    missing.append(f"{rel}:{node.lineno}: {key!r}")
    assert not missing, "add these messages to docs/troubleshooting.md:\n" + "\n".join(missing)
