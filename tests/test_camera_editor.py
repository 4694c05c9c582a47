"""The camera nodes against a real ComfyUI, and the keyframe editor (js/camera_editor.js) in the
real frontend: headless Chromium from Debian driven by PyPI playwright (no browser download).

The editor test adds a keyframe with real mouse events, drags it, deletes another, saves the
workflow, reloads it, checks the keyframes came back, then runs the graph (1 s of audio) and
checks the camera the AR sampler honoured matches the edited keyframes."""

from __future__ import annotations

import copy
import json
import math
import os
import time
import wave
from pathlib import Path

import pytest
import requests
import torch
from comfy_host import ComfyError, ComfyServer, ui_to_api

from starcaster_core.camera import CameraPreset, PresetSpec, plot_trajectory
from starcaster_core.camera_json import render_trajectory, trajectory_from_json

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = REPO_ROOT / "workflows" / "starcaster_orbit_nod.json"
CHROMIUM = os.environ.get("STARCASTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CAMERA = "STARCasterCameraTrajectory"
CAMERA_NODE = f"app.graph._nodes.find((n) => n.type === '{CAMERA}')"  # JS: the (one) camera node
YAW, PITCH = 0, 1  # editor lanes
pytestmark = pytest.mark.timeout(900)


def camera_api(keyframes: str = "", preset: str = "static", frames: int = 12, prefix: str = "test/cam") -> dict:
    return {
        "1": {"class_type": CAMERA,
              "inputs": {"preset": preset, "amplitude": 1.0, "speed": 1.0, "ease": True, "loop": False,
                         "shake_seed": 0, "frames": frames, "keyframes": keyframes}},
        "2": {"class_type": "STARCasterSaveCameraTrajectory",
              "inputs": {"camera": ["1", 0], "filename_prefix": prefix}},
    }


def error_message(err: ComfyError) -> str:
    return str(err).split("--- server log tail ---")[0]


# ---------------------------------------------------------------- the nodes, through the server


def test_camera_node_save_and_load_round_trip(comfy_server: ComfyServer):
    keys = '{"version": 1, "keyframes": [{"frame": 0, "yaw": 0}, {"frame": 10, "yaw": 20, "pitch": 5}]}'
    history = comfy_server.run(camera_api(keys, preset="nod", frames=12, prefix="test/roundtrip"), timeout=120)
    shown = history["outputs"]["1"]["camera"]  # what the editor overlays after a run
    expected = render_trajectory(PresetSpec(CameraPreset.NOD), keys, 12)
    assert torch.allclose(torch.tensor(shown), expected, atol=2e-3)
    saved = history["outputs"]["2"]["files"][0]
    assert saved.startswith("starcaster_cameras/test/roundtrip_") and saved.endswith(".json [output]"), saved
    path = comfy_server.output_dir / saved.removesuffix(" [output]")
    assert len(trajectory_from_json(path.read_text())) == 12  # one keyframe per frame

    load = {"1": {"class_type": "STARCasterLoadCameraTrajectory", "inputs": {"camera_file": saved, "frames": 0}},
            "2": {"class_type": "STARCasterSaveCameraTrajectory", "inputs": {"camera": ["1", 0],
                                                                               "filename_prefix": "test/again"}}}
    history = comfy_server.run(load, timeout=120)
    assert torch.allclose(torch.tensor(history["outputs"]["1"]["camera"]), expected, atol=2e-3)


@pytest.mark.parametrize(("keyframes", "message"), [
    ('{"version": 1, "keyframes": [{"frame": 5}, {"frame": 2}]}', "out of order"),
    ('{"version": 1, "keyframes": [{"frame": 0, "yaw": 10}', "malformed"),
    ('{"version": 1, "keyframes": [{"frame": 0, "yw": 10}]}', "unknown key"),
])
def test_bad_keyframes_fail_with_a_clear_message(comfy_server: ComfyServer, keyframes, message):
    with pytest.raises(ComfyError) as err:
        comfy_server.run(camera_api(keyframes), timeout=120)
    text = error_message(err.value)
    assert "ValueError" in text and message in text, text


def test_save_refuses_paths_that_leave_the_folder(comfy_server: ComfyServer):
    with pytest.raises(ComfyError) as err:
        comfy_server.run(camera_api(prefix="../../escape"), timeout=120)
    assert "leave output/starcaster_cameras" in error_message(err.value)
    assert not list(comfy_server.output_dir.parent.rglob("escape*"))


def test_load_lists_input_files_and_refuses_others(comfy_server: ComfyServer):
    (comfy_server.input_dir / "my_orbit.json").write_text(
        '{"version": 1, "preset": {"name": "orbit_right", "amplitude": 0.5}}')
    info = comfy_server.object_info(refresh=True)["STARCasterLoadCameraTrajectory"]["input"]["required"]
    assert "my_orbit.json" in info["camera_file"][1]["options"]
    load = {"1": {"class_type": "STARCasterLoadCameraTrajectory", "inputs": {"camera_file": "my_orbit.json",
                                                                              "frames": 9}},
            "2": {"class_type": "STARCasterSaveCameraTrajectory", "inputs": {"camera": ["1", 0],
                                                                               "filename_prefix": "test/right"}}}
    history = comfy_server.run(load, timeout=120)
    assert history["outputs"]["1"]["camera"][-1][0] == pytest.approx(-15.0, abs=1e-3)
    for name in ("../../etc/passwd", "../input/my_orbit.json [output]", "/etc/hosts"):
        load["1"]["inputs"]["camera_file"] = name
        with pytest.raises(ComfyError) as err:  # refused, whether or not the server checks the combo options
            comfy_server.run(load, timeout=120)
        assert "not in list" in str(err.value) or "is outside" in error_message(err.value), err.value


# ---------------------------------------------------------------- the editor, in the browser


@pytest.fixture(scope="module")
def page(comfy_server: ComfyServer, workflow_inputs):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (tools/host.sh installs it)"
    requests.post(comfy_server.url + "/settings", json={"Comfy.TutorialCompleted": True}, timeout=30)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.js_errors = []
        page.on("pageerror", lambda e: page.js_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
        page.goto(comfy_server.url)
        page.wait_for_function("() => window.app?.graph && window.LiteGraph?.registered_node_types?.['SaveVideo']",
                               timeout=90_000)
        time.sleep(1.0)  # let extensions finish their setup()
        try:
            yield page
        finally:
            browser.close()


# Put the camera node at a fixed spot on screen (zoom 1.25).
SHOW_JS = """async () => {
    const node = CAMERA_NODE;
    const ds = app.canvas.ds;
    ds.scale = 1.25;
    ds.offset[0] = 420 / ds.scale - node.pos[0];
    ds.offset[1] = 80 / ds.scale - node.pos[1];
    app.canvas.setDirty(true, true);
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return node.id;
}""".replace("CAMERA_NODE", CAMERA_NODE)
# Client (page) coordinates of a point of the editor: node-local editor geometry -> graph -> screen.
POINT_JS = """([kind, a, lane, b]) => {
    const node = CAMERA_NODE;
    const ed = node.starcasterEditor;
    const [lx, ly] = kind === 'handle' ? ed.handlePos(a, lane) : ed.pointPos(a, lane, b);
    const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + lx, node.pos[1] + ly]);
    const rect = app.canvas.canvas.getBoundingClientRect();
    const dpr = app.canvas.canvas.width / rect.width;
    return [rect.left + cx / dpr, rect.top + cy / dpr];
}""".replace("CAMERA_NODE", CAMERA_NODE)
STATE_JS = """() => {
    const node = CAMERA_NODE;
    const ed = node.starcasterEditor;
    return {keys: ed.state().keys, value: node.widgets.find((w) => w.name === 'keyframes').value, id: node.id,
            drawY: ed.drawY, lastY: ed.last_y};
}""".replace("CAMERA_NODE", CAMERA_NODE)


def screen_point(page, kind: str, a, lane: int, b=None) -> tuple[float, float]:
    return tuple(page.evaluate(POINT_JS, [kind, a, lane, b]))


def node_clip(page) -> dict:
    box = page.evaluate("""() => {
        const node = CAMERA_NODE;
        const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT]);
        const [x1, y1] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
        const rect = app.canvas.canvas.getBoundingClientRect(), dpr = app.canvas.canvas.width / rect.width;
        return {x: rect.left + x0 / dpr - 6, y: rect.top + y0 / dpr - 6, width: (x1 - x0) / dpr + 12,
                height: (y1 - y0) / dpr + 12};
    }""".replace("CAMERA_NODE", CAMERA_NODE))
    return box


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    n = int(seconds * rate)
    samples = [int(8000 * math.sin(2 * math.pi * 180 * t / rate) * (0.5 + 0.5 * math.sin(2 * math.pi * 3 * t / rate)))
               for t in range(n)]  # a voiced-like tone with a syllable rhythm
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))


def test_editor_add_drag_delete_save_reload_and_run(page, comfy_server: ComfyServer, artifacts_dir):
    write_wav(comfy_server.input_dir / "camera_editor_1s.wav")
    workflow = json.loads(WORKFLOW.read_text())
    audio = next(n for n in workflow["nodes"] if n["type"] == "LoadAudio")
    audio["widgets_values"][0] = "camera_editor_1s.wav"
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.evaluate(SHOW_JS)
    before = page.evaluate(STATE_JS)
    assert [k["frame"] for k in before["keys"]] == [0, 18, 36, 54, 72, 90], before
    assert before["drawY"] == before["lastY"] > 0  # the editor draws where LiteGraph laid it out

    # 1. click an empty spot of the yaw lane: a keyframe appears at frame 9
    x, y = screen_point(page, "point", 9, YAW, 20.0)
    page.mouse.click(x, y)
    keys = page.evaluate(STATE_JS)["keys"]
    added = next(k for k in keys if k["frame"] == 9)
    assert added["yaw"] == pytest.approx(20.0, abs=2.0), added
    assert added["pitch"] == pytest.approx(4.0, abs=0.2)  # other channels keep their curve (0 -> 8 at 18)

    # 2. drag it to frame 12, yaw -25
    x, y = screen_point(page, "handle", 1, YAW)
    tx, ty = screen_point(page, "point", 12, YAW, -25.0)
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(x + (tx - x) * i / 8, y + (ty - y) * i / 8)
    page.mouse.up()
    state = page.evaluate(STATE_JS)
    dragged = state["keys"][1]
    assert dragged["frame"] == 12 and dragged["yaw"] == pytest.approx(-25.0, abs=2.0), state["keys"]

    # 3. double-click the keyframe at frame 36 (in the pitch lane): it is deleted
    x, y = screen_point(page, "handle", 3, PITCH)
    page.mouse.dblclick(x, y)
    state = page.evaluate(STATE_JS)
    assert [k["frame"] for k in state["keys"]] == [0, 12, 18, 54, 72, 90], state["keys"]
    edited = state["value"]
    assert trajectory_from_json(edited)[1].frame == 12  # the server's parser accepts what the editor wrote
    time.sleep(0.3)
    page.screenshot(path=str(artifacts_dir / "camera_editor_edited.png"), clip=node_clip(page))

    # 4. save the workflow, load something else, reload it: the keyframes are back
    saved = page.evaluate("() => app.graph.serialize()")
    camera_id = state["id"]
    saved_node = next(n for n in saved["nodes"] if n["id"] == camera_id)
    assert edited in saved_node["widgets_values"], saved_node["widgets_values"]
    page.evaluate("async () => { app.graph.clear(); }")
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", copy.deepcopy(saved))
    page.evaluate(SHOW_JS)
    reloaded = page.evaluate(STATE_JS)
    assert reloaded["value"] == edited and reloaded["keys"] == state["keys"], reloaded
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert queued[str(camera_id)]["inputs"]["keyframes"] == edited  # what the frontend itself would send

    # 5. run the graph (as the page's client, so the editor receives the executed camera)
    info = comfy_server.object_info()
    api = ui_to_api(saved, info)
    assert api[str(camera_id)]["inputs"]["keyframes"] == edited
    client_id = page.evaluate("() => window.comfyAPI.api.api.clientId")
    r = requests.post(comfy_server.url + "/prompt", json={"prompt": api, "client_id": client_id}, timeout=60)
    assert r.ok and not r.json().get("node_errors"), r.text
    history = comfy_server.wait(r.json()["prompt_id"], timeout=840)
    sampler_id = next(k for k, v in api.items() if v["class_type"] == "STARCasterARSampler")
    honoured = torch.tensor(history["outputs"][sampler_id]["camera"])  # (T, 4)
    n_frames = honoured.shape[0]
    assert 20 <= n_frames <= 30, n_frames  # 1 s of audio at 25 fps

    widgets = saved_node["widgets_values"]
    preset = PresetSpec(CameraPreset(widgets[0]), *widgets[1:6])
    expected = render_trajectory(preset, edited, n_frames)
    assert torch.allclose(honoured, expected, atol=2e-3), (honoured - expected).abs().max()
    orbit_only = render_trajectory(preset, "", n_frames)
    assert honoured[12, 0] - orbit_only[12, 0] == pytest.approx(dragged["yaw"], abs=0.01)  # the dragged key

    page.wait_for_function(f"(n) => {CAMERA_NODE}.starcasterCamera?.length === n", arg=n_frames, timeout=30_000)
    time.sleep(0.3)
    page.screenshot(path=str(artifacts_dir / "camera_editor_after_run.png"), clip=node_clip(page))
    plot = (plot_trajectory(honoured, 640, 320) * 255).round().to(torch.uint8).numpy()
    from PIL import Image

    Image.fromarray(plot).save(artifacts_dir / "camera_plot_after_run.png")
    ours = [e for e in page.js_errors if "camera_editor" in e]
    assert not ours, "\n\n".join(ours)
