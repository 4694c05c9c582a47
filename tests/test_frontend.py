"""Browser tests: the real ComfyUI frontend (headless Chromium from Debian, driven by the
PyPI playwright package; no browser download) must know every pack node, load every
example workflow without missing nodes, and build the same prompt as `ui_to_api`."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import pytest
import requests
from comfy_host import PACK_NAME, ComfyServer, pack_nodes, strip_meta, ui_to_api

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = sorted((REPO_ROOT / "workflows").glob("*.json"))
CHROMIUM = os.environ.get("STARCASTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CORE_NODES = ("SaveVideo", "CreateVideo", "LoadAudio", "LoadImage")
READY_JS = """() => window.app && window.app.graph && window.LiteGraph
    && window.LiteGraph.registered_node_types && window.LiteGraph.registered_node_types['SaveVideo']"""
# Load a UI workflow the way a user would (missing-node dialog and schema checks on) and
# report what the frontend made of it: unknown node types, open dialogs, and the toasts
# that this load raised (schema errors, links the frontend had to repair).
LOAD_JS = """async (wf) => {
    const before = new Set(document.querySelectorAll('.p-toast-message'));
    await app.loadGraphData(wf);
    await new Promise((r) => setTimeout(r, 750));
    const reg = LiteGraph.registered_node_types;
    const nodes = app.graph._nodes ?? app.graph.nodes;
    const visible = (el) => el.getClientRects().length > 0;
    try {  // for the screenshot; the view change is animated
        await app.extensionManager.command.execute('Comfy.Canvas.FitView');
        await new Promise((r) => setTimeout(r, 600));
    } catch (e) {}
    return {
        count: nodes.length,
        missing: nodes.filter((n) => !reg[n.type] || n.has_errors).map((n) => `${n.id}:${n.type}`),
        dialogs: [...document.querySelectorAll('.p-dialog')].filter(visible).map(
            (d) => `${d.getAttribute('aria-labelledby') || ''}: ${d.innerText.slice(0, 300)}`),
        toasts: [...document.querySelectorAll('.p-toast-message')].filter((t) => !before.has(t)).map(
            (t) => `${t.className.match(/p-toast-message-(\\w+)/)?.[1] || ''}: ${t.innerText.slice(0, 600)}`),
    };
}"""
CLEAR_JS = """() => {
    document.querySelectorAll('.p-toast-close-button').forEach((b) => b.click());
    return [...document.querySelectorAll('.p-dialog')].some((d) => d.getClientRects().length > 0);
}"""
pytestmark = pytest.mark.timeout(300)


def workflow_params() -> list:
    if not WORKFLOW_FILES:
        return [pytest.param(None, id="no-workflows", marks=pytest.mark.skip(reason="no workflows yet"))]
    return [pytest.param(p, id=p.name) for p in WORKFLOW_FILES]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (tools/host.sh installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(browser, comfy_server: ComfyServer, workflow_inputs):
    # a first visit opens the template browser over the canvas: mark the tutorial as done
    requests.post(comfy_server.url + "/settings", json={"Comfy.TutorialCompleted": True}, timeout=30)
    page = browser.new_page(viewport={"width": 2000, "height": 1250})
    page.js_errors = []  # errors raised by scripts, with their stacks
    page.bad_responses = []  # failed requests for the pack's own files
    page.on("pageerror", lambda e: page.js_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
    page.on(
        "console",
        lambda m: page.js_errors.append(f"{m.text}\n{m.location}") if m.type == "error" else None,
    )
    page.on(
        "response",
        lambda r: (
            page.bad_responses.append(f"{r.status} {r.url}")
            if f"/extensions/{PACK_NAME}/" in r.url and r.status >= 400
            else None
        ),
    )
    page.goto(comfy_server.url)
    page.wait_for_function(READY_JS, timeout=90_000)
    time.sleep(1.0)  # let extensions finish their setup()
    try:
        yield page
    finally:
        page.close()


def close_dialogs(page) -> None:
    """Close open dialogs and toasts left by an earlier load."""
    for _ in range(5):
        if not page.evaluate(CLEAR_JS):
            return
        page.keyboard.press("Escape")
        time.sleep(0.3)


def workflow_toasts(report: dict) -> list[str]:
    """Toasts of this load that say the file is malformed (schema errors, repaired links)."""
    return [t for t in report["toasts"] if re.search(r"workflow|schema|link|node", t, re.IGNORECASE)]


def load_workflow(page, workflow: dict) -> dict:
    close_dialogs(page)
    return page.evaluate(LOAD_JS, workflow)


def frontend_prompt(page, object_info: dict) -> dict:
    """The prompt the frontend would queue, restricted to the inputs the schema knows
    (the frontend also sends UI-only widgets such as LoadAudio's audioUI)."""
    output = page.evaluate("async () => (await app.graphToPrompt()).output")
    result = {}
    for node_id, node in strip_meta(output).items():
        schema = object_info[node["class_type"]].get("input") or {}
        known = set(schema.get("required") or {}) | set(schema.get("optional") or {})
        result[node_id] = {
            "class_type": node["class_type"],
            "inputs": {k: v for k, v in node["inputs"].items() if k in known},
        }
    return result


def assert_same_prompt(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs), f"nodes differ: ui_to_api {sorted(ours)} vs frontend {sorted(theirs)}"
    for node_id in ours:
        a, b = ours[node_id], theirs[node_id]
        assert a["class_type"] == b["class_type"]
        assert sorted(a["inputs"]) == sorted(b["inputs"]), f"node {node_id} ({a['class_type']}) input names"
        for name, value in a["inputs"].items():
            other = b["inputs"][name]
            if isinstance(value, float) or isinstance(other, float):
                assert math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-9), (node_id, name, value, other)
            else:
                assert value == other, f"node {node_id} ({a['class_type']}).{name}: {value!r} vs frontend {other!r}"


def test_pack_nodes_registered_in_frontend(page, comfy_server: ComfyServer):
    registered = set(page.evaluate("() => Object.keys(LiteGraph.registered_node_types)"))
    wanted = [*CORE_NODES, *pack_nodes(comfy_server.object_info())]  # core ones prove the check works
    missing = [name for name in wanted if name not in registered]
    assert not missing, f"not registered in the frontend: {missing}"


def test_pack_frontend_extension_loads_cleanly(page, comfy_server: ComfyServer, repo_root: Path):
    served = set(comfy_server.get_json("/extensions"))
    ours = sorted(p.relative_to(repo_root / "js").as_posix() for p in (repo_root / "js").rglob("*.js"))
    for rel in ours:
        assert f"/extensions/{PACK_NAME}/{rel}" in served, f"js/{rel} is not served to the frontend"
    assert not page.bad_responses, page.bad_responses
    pack_errors = [e for e in page.js_errors if f"/extensions/{PACK_NAME}/" in e]
    assert not pack_errors, "\n\n".join(pack_errors)


def test_workflow_checks_catch_broken_files(page, tiny_ui_workflow):
    """Negative controls: the checks used below do see an unknown node type, and a file
    that breaks the frontend's workflow schema."""
    broken = json.loads(json.dumps(tiny_ui_workflow))
    del broken["nodes"][0]["flags"]
    report = load_workflow(page, broken)
    assert any("schema" in t for t in workflow_toasts(report)), report

    tiny_ui_workflow["nodes"].append(
        {
            "id": 99,
            "type": "NotARealStarcasterNode",
            "pos": [0, 500],
            "size": [200, 60],
            "flags": {},
            "order": 8,
            "mode": 0,
            "properties": {},
            "widgets_values": [1],
        }
    )
    report = load_workflow(page, tiny_ui_workflow)
    assert report["missing"] == ["99:NotARealStarcasterNode"], report
    assert any("missing" in d.lower() for d in report["dialogs"]), report
    close_dialogs(page)


def test_tiny_workflow_prompt_matches_frontend(page, comfy_server: ComfyServer, tiny_ui_workflow, artifacts_dir):
    report = load_workflow(page, tiny_ui_workflow)
    assert report["missing"] == [] and report["dialogs"] == [], report
    assert not workflow_toasts(report), report["toasts"]
    page.screenshot(path=str(artifacts_dir / "frontend_tiny_workflow.png"))
    info = comfy_server.object_info()
    assert_same_prompt(strip_meta(ui_to_api(tiny_ui_workflow, info)), frontend_prompt(page, info))


@pytest.mark.parametrize("workflow_path", workflow_params())
def test_workflow_loads_in_frontend(page, comfy_server: ComfyServer, workflow_path: Path, artifacts_dir):
    workflow = json.loads(workflow_path.read_text())
    report = load_workflow(page, workflow)
    page.screenshot(path=str(artifacts_dir / f"frontend_{workflow_path.stem}.png"))
    assert report["count"] > 0, report
    assert report["missing"] == [], f"nodes the frontend does not know: {report['missing']}"
    problems = [d for d in report["dialogs"] if "missing" in d.lower()]
    assert not problems, problems
    assert not workflow_toasts(report), "the frontend complained about the file:\n" + "\n".join(report["toasts"])
    info = comfy_server.object_info()
    assert_same_prompt(strip_meta(ui_to_api(workflow, info)), frontend_prompt(page, info))
