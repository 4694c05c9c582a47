"""Drive a real ComfyUI (the host built by tools/host.sh) from the integration tests.

`ComfyServer` runs `main.py --cpu` in a throw-away base directory whose
`custom_nodes/comfyui-starcaster` is a symlink to this repository; `ui_to_api` turns a
UI-format workflow (what the frontend saves, what `workflows/*.json` hold) into the API
format that POST /prompt accepts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger(__name__)

PACK_NAME = "comfyui-starcaster"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Frontend-only node types: never sent to the server.
VIRTUAL_NODE_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
MODE_MUTED, MODE_BYPASSED = 2, 4
# Input types that the frontend turns into widgets (values live in widgets_values).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})


class ComfyError(RuntimeError):
    """A prompt was rejected or failed; the message carries the server's details."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """One ComfyUI process with the pack installed, for a test session."""

    def __init__(
        self,
        comfyui_dir: str | os.PathLike,
        repo_root: str | os.PathLike = REPO_ROOT,
        python: str = sys.executable,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.comfyui_dir = Path(comfyui_dir).resolve()
        self.repo_root = Path(repo_root).resolve()
        self.python = python
        self.extra_args = list(extra_args)
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._object_info: dict | None = None
        self.client_id = uuid.uuid4().hex

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def input_dir(self) -> Path:
        return self._base() / "input"

    @property
    def output_dir(self) -> Path:
        return self._base() / "output"

    def _base(self) -> Path:
        assert self.base_dir is not None, "server not started"
        return self.base_dir

    def start(self, timeout: float = 120.0) -> ComfyServer:
        if not (self.comfyui_dir / "main.py").is_file():
            raise FileNotFoundError(f"no ComfyUI main.py in {self.comfyui_dir}")
        self.base_dir = Path(tempfile.mkdtemp(prefix="starcaster-comfy-"))
        for sub in ("custom_nodes", "input", "output", "temp", "models", "user"):
            (self.base_dir / sub).mkdir()
        (self.base_dir / "custom_nodes" / PACK_NAME).symlink_to(self.repo_root, target_is_directory=True)
        self.port = free_port()
        self.log_path = self.base_dir / "server.log"
        cmd = [
            self.python, "main.py", "--cpu",
            "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base_dir),
            "--database-url", "sqlite:///:memory:",
            "--disable-api-nodes",
            *self.extra_args,
        ]  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        log.info("starting ComfyUI: %s (log: %s)", " ".join(cmd), self.log_path)
        self._log_file = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            cmd, cwd=self.comfyui_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        t0 = time.monotonic()
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/system_stats", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise TimeoutError(f"ComfyUI not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.25)
        log.info("ComfyUI ready at %s in %.1fs", self.url, time.monotonic() - t0)
        return self

    def stop(self, keep_log_to: str | os.PathLike | None = None) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if keep_log_to and self.log_path and self.log_path.exists():
            Path(keep_log_to).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log_path, keep_log_to)
        if self.base_dir is not None and not os.environ.get("STARCASTER_KEEP_COMFY_BASE"):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- HTTP ------------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        r = requests.get(self.url + path, timeout=timeout)
        r.raise_for_status()
        return r.json()

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = self.get_json("/object_info", timeout=60)
        return self._object_info

    def queue(self, api_prompt: dict) -> str:
        r = requests.post(self.url + "/prompt", json={"prompt": api_prompt, "client_id": self.client_id}, timeout=60)
        if not r.ok:
            raise ComfyError(f"prompt rejected ({r.status_code}): {_pretty(r.text)}")
        body = r.json()
        if body.get("node_errors"):
            raise ComfyError(f"prompt has node errors: {_pretty(body['node_errors'])}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """Poll /history until the prompt finished; return its history entry."""
        t0 = time.monotonic()
        while True:
            entry = self.get_json(f"/history/{prompt_id}").get(prompt_id)
            status = (entry or {}).get("status") or {}
            if status.get("status_str") == "error":
                raise ComfyError(
                    f"prompt {prompt_id} failed:\n{_error_messages(status)}\n--- server log tail ---\n{self.log_tail()}"
                )
            if entry and status.get("completed"):
                return entry
            if self._proc is not None and self._proc.poll() is not None:
                raise ComfyError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            if time.monotonic() - t0 > timeout:
                requests.post(self.url + "/interrupt", timeout=10)
                raise TimeoutError(f"prompt {prompt_id} not done after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def run(self, api_prompt: dict, timeout: float = 300.0) -> dict:
        return self.wait(self.queue(api_prompt), timeout=timeout)

    def output_files(self, history: dict) -> list[Path]:
        """Every file that the prompt's nodes report in their UI outputs, as local paths."""
        dirs = {"output": self.output_dir, "temp": self._base() / "temp", "input": self.input_dir}
        files = []
        for node_out in history.get("outputs", {}).values():
            for items in node_out.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        root = dirs[item.get("type", "output")]
                        files.append(root / item.get("subfolder", "") / item["filename"])
        return files

    def copy_input(self, path: str | os.PathLike, name: str | None = None) -> str:
        """Copy a file into the server's input dir; return the name LoadImage/LoadAudio use."""
        name = name or Path(path).name
        dest = self.input_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        return name


def _pretty(text_or_obj: Any) -> str:
    try:
        obj = json.loads(text_or_obj) if isinstance(text_or_obj, str) else text_or_obj
        return json.dumps(obj, indent=1)[:6000]
    except ValueError:
        return str(text_or_obj)[:6000]


def _error_messages(status: dict) -> str:
    out = []
    for event, data in status.get("messages", []):
        if event in ("execution_error", "execution_interrupted"):
            out.append(
                f"{event}: node {data.get('node_id')} ({data.get('node_type')}): "
                f"{data.get('exception_type', '')}: {data.get('exception_message', '')}\n"
                + "".join(data.get("traceback") or [])
            )
    return "\n".join(out) or _pretty(status)


# -- UI workflow -> API prompt ------------------------------------------------------------
def _links_by_id(workflow: dict) -> dict[int, tuple[int, int, str]]:
    """link id -> (origin node id, origin slot, type); both the array and object forms."""
    links = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            links[link["id"]] = (link["origin_id"], link["origin_slot"], link.get("type"))
        else:
            link_id, origin_id, origin_slot, _target_id, _target_slot, link_type = link[:6]
            links[link_id] = (origin_id, origin_slot, link_type)
    return links


def _input_specs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) of required then optional inputs, in the order the frontend shows them."""
    specs = []
    order = info.get("input_order") or {}
    for group in ("required", "optional"):
        group_specs = (info.get("input") or {}).get(group) or {}
        for name in order.get(group) or list(group_specs):
            if name in group_specs:
                specs.append((name, group_specs[name]))
    return specs


def _is_widget(spec: list, ui_input: dict | None, extra_widget_types: frozenset) -> bool:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput"):
        return False
    if isinstance(kind, list) or kind in WIDGET_TYPES or kind in extra_widget_types:
        return True
    return bool(ui_input and ui_input.get("widget"))  # a custom widget the frontend made


def ui_to_api(workflow: dict, object_info: dict, extra_widget_types: Iterable[str] = ()) -> dict[str, dict]:
    """Convert a UI-format workflow to the API prompt format (like the frontend's
    graphToPrompt): widgets_values are mapped onto the node's widget inputs in schema
    order, links become [node_id, slot], muted nodes vanish, bypassed nodes and Reroutes
    are bridged, and frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are
    dropped. Subgraphs and group nodes are not supported.
    """
    extra = frozenset(extra_widget_types)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links_by_id(workflow)

    def resolve(link_id: int | None, seen: frozenset = frozenset()) -> list | None:
        """Follow a link upstream through Reroutes and bypassed nodes to a real output."""
        if link_id is None or link_id not in links or link_id in seen:
            return None
        origin_id, origin_slot, link_type = links[link_id]
        origin = nodes.get(origin_id)
        if origin is None or origin.get("mode") == MODE_MUTED:
            return None
        seen = seen | {link_id}
        if origin["type"] == "Reroute":
            ins = origin.get("inputs") or []
            return resolve(ins[0].get("link"), seen) if ins else None
        if origin["type"] == "PrimitiveNode":
            return None  # its value already sits in the target's widgets_values
        if origin.get("mode") == MODE_BYPASSED:
            ins = origin.get("inputs") or []
            # the frontend prefers the input at the same slot, then any input of that type
            order = ([ins[origin_slot]] if origin_slot < len(ins) else []) + ins
            for candidate in order:
                if candidate.get("link") is not None and _types_match(candidate.get("type"), link_type):
                    return resolve(candidate["link"], seen)
            return None
        return [str(origin_id), origin_slot]

    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        node_type = node["type"]
        if node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        if node_type not in object_info:
            if node_type in VIRTUAL_NODE_TYPES:
                continue
            raise KeyError(
                f"node {node['id']} has type {node_type!r}, which the server does not know "
                "(a missing custom node, a subgraph or a group node?)"
            )
        info = object_info[node_type]
        ui_inputs = {i["name"]: i for i in node.get("inputs") or []}
        values = node.get("widgets_values")
        inputs: dict[str, Any] = {}
        if isinstance(values, dict):  # some nodes save widgets by name
            for name, spec in _input_specs(info):
                if name in values and _is_widget(spec, ui_inputs.get(name), extra):
                    inputs[name] = values[name]
        else:
            values = list(values or [])
            pos = 0
            for name, spec in _input_specs(info):
                if not _is_widget(spec, ui_inputs.get(name), extra) or pos >= len(values):
                    continue
                inputs[name] = values[pos]
                pos += 1
                opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                declared = opts.get("control_after_generate") or opts.get("control_before_generate")
                guessed = name in ("seed", "noise_seed") and pos < len(values) and values[pos] in SEED_CONTROL_VALUES
                if (declared or guessed) and pos < len(values):
                    pos += 1  # skip the "control_after_generate" widget's value
        for name, ui_input in ui_inputs.items():
            if ui_input.get("link") is None:
                continue
            source = resolve(ui_input["link"])
            if source is not None:
                inputs[name] = source
            elif not ui_input.get("widget"):
                inputs.pop(name, None)
        prompt[str(node["id"])] = {
            "inputs": inputs,
            "class_type": node_type,
            "_meta": {"title": node.get("title") or info.get("display_name") or node_type},
        }
    return prompt


def _types_match(a: str | None, b: str | None) -> bool:
    if a in (None, "*") or b in (None, "*"):
        return True
    return bool(set(str(a).split(",")) & set(str(b).split(",")))


def pack_nodes(object_info: dict) -> list[str]:
    """Names of the nodes this pack registered (by module path or category)."""
    return sorted(
        name
        for name, info in object_info.items()
        if PACK_NAME in str(info.get("python_module", "")) or str(info.get("category", "")).startswith("STARCaster")
    )


def strip_meta(prompt: dict) -> dict:
    """An API prompt without the "_meta" titles, for comparisons."""
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
