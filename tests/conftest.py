"""Shared fixtures. The ComfyUI server starts only when a test asks for `comfy_server`,
so unit tests of the pure core run without it (and without tools/host.sh)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
WORKFLOW_DIR = REPO_ROOT / "workflows"
WORKFLOW_INPUTS = WORKFLOW_DIR / "inputs"

# A tiny UI-format workflow, as the frontend saves it (link target slots index "inputs"):
# EmptyImage -> Reroute -> ImageInvert (bypassed) -> SaveImage, its height fed by a
# PrimitiveInt, plus a Note, a MarkdownNote and a muted SaveImage that must all vanish.
# fmt: off
TINY_UI_WORKFLOW = {
    "last_node_id": 8,
    "last_link_id": 5,
    "nodes": [
        {"id": 1, "type": "EmptyImage", "pos": [300, 100], "size": [270, 130], "mode": 0,
         "inputs": [{"name": n, "type": "INT", "widget": {"name": n}, "link": 4 if n == "height" else None}
                    for n in ("width", "height", "batch_size", "color")],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1, 5]}],
         "widgets_values": [64, 16, 1, 0xFF0000]},
        {"id": 2, "type": "Reroute", "pos": [620, 100], "size": [75, 26], "mode": 0,
         "inputs": [{"name": "", "type": "*", "link": 1}],
         "outputs": [{"name": "", "type": "IMAGE", "links": [2]}]},
        {"id": 3, "type": "ImageInvert", "pos": [740, 100], "size": [140, 26], "mode": 4,
         "inputs": [{"name": "image", "type": "IMAGE", "link": 2}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}]},
        {"id": 4, "type": "SaveImage", "pos": [920, 100], "size": [270, 270], "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 3}],
         "widgets_values": ["starcaster_test/tiny"]},
        {"id": 5, "type": "PrimitiveInt", "pos": [20, 100], "size": [240, 82], "mode": 0,
         "outputs": [{"name": "INT", "type": "INT", "links": [4]}],
         "widgets_values": [48, "fixed"]},
        {"id": 6, "type": "Note", "pos": [20, 300], "size": [240, 80], "mode": 0,
         "widgets_values": ["frontend-only, never sent to the server"]},
        {"id": 7, "type": "SaveImage", "pos": [920, 420], "size": [270, 270], "mode": 2,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 5}],
         "widgets_values": ["starcaster_test/muted"]},
        {"id": 8, "type": "MarkdownNote", "pos": [300, 300], "size": [240, 80], "mode": 0,
         "widgets_values": ["# also frontend-only"]},
    ],
    "links": [
        [1, 1, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 3, 0, "IMAGE"],
        [3, 3, 0, 4, 0, "IMAGE"],
        [4, 5, 0, 1, 1, "INT"],
        [5, 1, 0, 7, 0, "IMAGE"],
    ],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}
# fmt: on
for _order, _node in enumerate(TINY_UI_WORKFLOW["nodes"]):  # fields the frontend's schema requires
    _node.update(flags={}, order=_order, properties={})
TINY_API_EXPECTED = {
    "1": {"class_type": "EmptyImage",
          "inputs": {"width": 64, "height": ["5", 0], "batch_size": 1, "color": 0xFF0000}},
    "4": {"class_type": "SaveImage",
          "inputs": {"images": ["1", 0], "filename_prefix": "starcaster_test/tiny"}},
    "5": {"class_type": "PrimitiveInt", "inputs": {"value": 48}},
}  # fmt: skip


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def comfy_server(repo_root):
    """One real ComfyUI (with this pack symlinked in) for the whole session."""
    comfyui_dir = os.environ.get("COMFYUI_DIR")
    if not comfyui_dir:
        pytest.skip("COMFYUI_DIR is not set: run the integration tests with `bash tools/test.sh`")
    from comfy_host import ComfyServer

    server = ComfyServer(comfyui_dir, repo_root).start()
    try:
        yield server
    finally:
        server.stop(keep_log_to=ARTIFACTS / "comfy_server.log")


@pytest.fixture(scope="session")
def workflow_inputs(comfy_server) -> list[str]:
    """Copy every file under workflows/inputs/ into the server's input dir (once)."""
    names = []
    if WORKFLOW_INPUTS.is_dir():
        for path in sorted(p for p in WORKFLOW_INPUTS.rglob("*") if p.is_file()):
            names.append(comfy_server.copy_input(path, str(path.relative_to(WORKFLOW_INPUTS))))
    return names


@pytest.fixture
def tiny_ui_workflow() -> dict:
    return copy.deepcopy(TINY_UI_WORKFLOW)


@pytest.fixture
def tiny_api_expected() -> dict:
    return copy.deepcopy(TINY_API_EXPECTED)
