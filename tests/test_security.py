"""Security (issue 7, parts 1 and 3).

- only safetensors are ever loaded: no pickle, no torch.load, not even of our own files;
- bad checkpoint and identity files (missing, truncated, pickles, foreign, mismatched config,
  corrupt, from another model) end in clean errors through the real server, and the next
  valid prompt succeeds;
- file names from node inputs cannot escape their folder (path traversal is refused);
- importing and registering the pack downloads nothing, runs no process and writes no file.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from comfy_host import ComfyServer
from safetensors.torch import save_file
from test_bad_inputs import (
    assert_clean_error,
    assert_recovers,
    empty_audio,
    frames_of,
    install_tiny_checkpoint,
    run_error,
    run_ok,
    talking_graph,
)

from starcaster_core.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from starcaster_core.config import PRESETS
from starcaster_core.identity import Identity, IdentityError, load_identity, random_identity, save_identity
from starcaster_core.model import STARCaster

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_SOURCES = [REPO_ROOT / "__init__.py", *sorted((REPO_ROOT / "nodes").rglob("*.py")),
                *sorted((REPO_ROOT / "starcaster_core").rglob("*.py"))]
# Calls and imports that load or run code from data, or reach the network.
FORBIDDEN_CALLS = {"torch.load", "torch.hub.load", "np.load", "numpy.load", "eval", "exec", "os.system",
                   "os.popen", "pickle.load", "pickle.loads", "marshal.loads", "urlretrieve"}
FORBIDDEN_IMPORTS = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve", "urllib", "requests", "http",
                     "socket", "huggingface_hub", "torch.hub", "ftplib", "aiohttp"}
# Offline tools that may run programs (espeak-ng for the synthetic world, the benchmark's
# child processes); the import test below proves the nodes never import them.
SUBPROCESS_ALLOWED = ("starcaster_core/synthetic/", "starcaster_core/bench/")


# -- bad files on disk, through the server --------------------------------------------------------
class Detonator:
    """A pickle that would create a file if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def bad_files(comfy_server: ComfyServer, tmp_path_factory) -> dict:
    """Checkpoints and identity files of every kind, written where the loaders look."""
    models = comfy_server.base_dir / "models" / "starcaster"
    identities = comfy_server.base_dir / "models" / "starcaster_identities"
    models.mkdir(parents=True, exist_ok=True)
    identities.mkdir(parents=True, exist_ok=True)
    marker = tmp_path_factory.mktemp("pickle") / "unpickled"
    tiny = STARCaster(PRESETS["tiny"])
    install_tiny_checkpoint(comfy_server, "sc_tiny.safetensors")
    good = (models / "sc_tiny.safetensors").read_bytes()
    (models / "sc_truncated.safetensors").write_bytes(good[: len(good) // 2])
    (models / "sc_pickle.safetensors").write_bytes(pickle.dumps({"state_dict": Detonator(marker)}))
    save_file({"w": torch.zeros(4)}, str(models / "sc_foreign.safetensors"), metadata={"format": "pt"})
    demo_config = PRESETS["demo"].to_json()
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, str(models / "sc_mismatch.safetensors"),
              metadata={"format": "starcaster", "format_version": "1", "config": demo_config})
    save_file({"w": torch.zeros(4)}, str(models / "sc_badconfig.safetensors"),
              metadata={"format": "starcaster", "format_version": "1", "config": '{"dim": "wide"'})
    (identities / "id_corrupt.safetensors").write_bytes(b"\x00" * 7 + b"not an identity")
    save_identity(Identity(torch.randn(PRESETS["demo"].identity_dim), "0123456789abcdef", "someone else"),
                  identities / "id_other_model.safetensors")
    save_file({"embedding": torch.zeros(32)}, str(identities / "id_not_identity.safetensors"))
    yield {"marker": marker}
    assert not marker.exists(), "a pickle was unpickled!"
    for folder in (models, identities):
        for path in folder.glob("*.safetensors"):
            path.unlink()


def test_user_checkpoint_loads_and_runs(comfy_server: ComfyServer, bad_files):
    """Positive control: a valid checkpoint in models/starcaster/ (the tiny preset) generates."""
    entry = run_ok(comfy_server, talking_graph(empty_audio(0.2), model_name="sc_tiny.safetensors"))
    assert frames_of(entry) == 5


CHECKPOINT_CASES = {
    "missing": ("sc_missing.safetensors", "validation", r"model_name - model .* is not one of.*models/starcaster/"),
    "traversal": ("../../../../etc/passwd", "validation", r"is not one of.*models/starcaster/"),
    "truncated": ("sc_truncated.safetensors", "execution", r"not a readable safetensors.*truncated"),
    "pickle": ("sc_pickle.safetensors", "execution", r"not a readable safetensors.*only \.safetensors"),
    "foreign": ("sc_foreign.safetensors", "execution", r"not a STARCaster checkpoint"),
    "config_mismatch": ("sc_mismatch.safetensors", "execution", r"do not match its config"),
    "config_invalid": ("sc_badconfig.safetensors", "execution", r"config metadata is invalid"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint_names_the_node_and_the_fix(comfy_server: ComfyServer, bad_files, case: str):
    name, kind, pattern = CHECKPOINT_CASES[case]
    err = run_error(comfy_server, talking_graph(empty_audio(0.2), model_name=name))
    assert err.kind == kind, err  # names outside the folder are refused before anything runs
    assert_clean_error(err, "STARCasterModelLoader", pattern)
    assert not bad_files["marker"].exists(), "the pickle was unpickled"
    assert_recovers(comfy_server)


IDENTITY_CASES = {
    "corrupt": ("id_corrupt.safetensors", "STARCasterLoadIdentity", r"not a readable identity file"),
    "not_identity": ("id_not_identity.safetensors", "STARCasterLoadIdentity", r"not a STARCaster identity file"),
    "other_model": ("id_other_model.safetensors", "STARCasterARSampler", r"made for another STARCaster model"),
    "missing": ("id_missing.safetensors", "STARCasterLoadIdentity", r"is not one of.*Save Identity"),
    "traversal": ("../../models/starcaster/sc_tiny.safetensors", "STARCasterLoadIdentity", r"is not one of"),
}


@pytest.mark.parametrize("case", list(IDENTITY_CASES))
def test_bad_identity_file_names_the_node_and_the_fix(comfy_server: ComfyServer, bad_files, case: str):
    name, node, pattern = IDENTITY_CASES[case]
    identity = {"class_type": "STARCasterLoadIdentity", "inputs": {"identity_file": name}}
    err = run_error(comfy_server, talking_graph(empty_audio(0.2), identity=identity))
    assert_clean_error(err, node, pattern)
    assert_recovers(comfy_server)


# -- only safetensors ------------------------------------------------------------------------
def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def test_no_pickle_eval_or_network_in_the_pack():
    problems = []
    for path in PACK_SOURCES:
        rel = path.relative_to(REPO_ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and dotted(node.func) in FORBIDDEN_CALLS:
                problems.append(f"{rel}:{node.lineno} calls {dotted(node.func)}")
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if name in FORBIDDEN_IMPORTS or top in FORBIDDEN_IMPORTS:
                    problems.append(f"{rel}:{node.lineno} imports {name}")
                if top == "subprocess" and not rel.startswith(SUBPROCESS_ALLOWED):
                    problems.append(f"{rel}:{node.lineno} imports subprocess")
    assert not problems, "\n".join(problems)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make every unpickling entry point fail loudly for the duration of a test."""

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for target, name in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(target, name, refuse)


def test_loaders_read_safetensors_only(tmp_path, no_unpickling):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"state_dict": Detonator(marker)})
    for name in ("model.safetensors", "model.ckpt", "model.pt", "model.bin"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(CheckpointError, match="only .safetensors"):
            load_checkpoint(tmp_path / name)
        with pytest.raises(IdentityError, match="not a readable identity file"):
            load_identity(tmp_path / name)
    assert not marker.exists()
    # and the real thing loads with every unpickler disabled
    model = STARCaster(PRESETS["tiny"])
    save_checkpoint(model, tmp_path / "ok.safetensors")
    assert read_metadata(tmp_path / "ok.safetensors")["format"] == "starcaster"
    assert load_checkpoint(tmp_path / "ok.safetensors").config == PRESETS["tiny"]
    save_identity(random_identity(model, 1), tmp_path / "id.safetensors")
    assert load_identity(tmp_path / "id.safetensors").embedding.shape == (PRESETS["tiny"].identity_dim,)


def test_hostile_config_cannot_allocate_a_huge_model(tmp_path):
    """A config that claims a gigantic model (64 blocks of width 65536: ~8 TB of weights) is
    refused before any weight is allocated."""

    huge = {**json.loads(PRESETS["tiny"].to_json()), "dim": 65536, "depth": 64, "heads": 1}
    save_file({"w": torch.zeros(1)}, str(tmp_path / "huge.safetensors"),
              metadata={"format": "starcaster", "format_version": "1", "config": json.dumps(huge)})
    with pytest.raises(CheckpointError, match="do not match its config|config metadata is invalid"):
        load_checkpoint(tmp_path / "huge.safetensors")


# -- path traversal ------------------------------------------------------------------------
def load_validate():
    spec = importlib.util.spec_from_file_location("starcaster_nodes_validate", REPO_ROOT / "nodes" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("prefix", ["../evil", "../../evil", "a/../../evil", "/tmp/evil", "\\evil", "..\\evil",
                                    "a/..", "..", "C:evil", "C:\\evil", "ok\0evil", "", "   "])
def test_save_prefix_cannot_leave_its_folder(prefix: str):
    with pytest.raises(ValueError, match="filename_prefix"):
        load_validate().safe_prefix(prefix, "starcaster_identities")


@pytest.mark.parametrize("prefix,expected", [("identity", "identity"), ("people/anna", "people/anna"),
                                             ("./a//b", "a/b"), ("a..b", "a..b")])
def test_save_prefix_keeps_plain_names(prefix: str, expected: str):
    assert load_validate().safe_prefix(prefix, "starcaster_identities") == f"starcaster_identities/{expected}"


@pytest.mark.parametrize("prefix", ["../../evil_identity", "/tmp/evil_identity_abs"])
def test_save_identity_refuses_traversal_through_the_server(comfy_server: ComfyServer, prefix: str):
    graph = talking_graph(empty_audio(0.1))
    save = {"save": {"class_type": "STARCasterSaveIdentity",
                     "inputs": {"identity": ["identity", 0], "filename_prefix": prefix}}}
    err = run_error(comfy_server, {k: graph[k] for k in ("model", "identity")} | save)
    assert_clean_error(err, "STARCasterSaveIdentity", r"would leave output/starcaster_identities")
    assert not list(comfy_server.base_dir.rglob("evil_identity*")) and not list(Path("/tmp").glob("evil_identity*"))
    ok = run_ok(comfy_server, {k: graph[k] for k in ("model", "identity")}
                | {"save": {**save["save"], "inputs": {**save["save"]["inputs"], "filename_prefix": "people/anna"}}})
    [saved] = [p for p in (comfy_server.output_dir / "starcaster_identities" / "people").glob("anna_*.safetensors")]
    assert "saved starcaster_identities/people/anna_" in ok["outputs"]["save"]["text"][0]
    saved.unlink()


@pytest.mark.parametrize("node,field", [("STARCasterModelLoader", "model_name"),
                                        ("STARCasterLoadIdentity", "identity_file")])
@pytest.mark.parametrize("name", ["../../../../etc/passwd", "/etc/passwd", "../starcaster/x.safetensors"])
def test_loaders_refuse_names_outside_their_lists(comfy_server: ComfyServer, node: str, field: str, name: str):
    """ComfyUI 0.3.75 does not check V3 combo values: the nodes' validate_inputs must."""
    if node == "STARCasterModelLoader":
        prompt = talking_graph(empty_audio(0.1), model_name=name)
    else:
        prompt = talking_graph(empty_audio(0.1), identity={"class_type": node, "inputs": {field: name}})
    err = run_error(comfy_server, prompt)
    assert err.kind == "validation", err
    assert_clean_error(err, node, rf"{field} - .* is not one of")


def test_folder_paths_cannot_be_tricked(tmp_path):
    """The lookup the loaders use keeps every name inside the registered folder."""
    comfyui = os.environ.get("COMFYUI_DIR")
    if not comfyui:
        pytest.skip("COMFYUI_DIR is not set: run with `bash tools/test.sh`")
    inside = tmp_path / "models" / "starcaster_sec"
    inside.mkdir(parents=True)
    (inside / "ok.safetensors").write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    code = (
        "import sys, json\n"
        f"sys.path.append({comfyui!r})\n"
        "import folder_paths as fp\n"
        f"fp.add_model_folder_path('starcaster_sec', {str(inside)!r})\n"
        "names = ['../secret.safetensors', '../../secret.safetensors', '/' + {secret!r}, 'ok.safetensors',\n"
        "         './../secret.safetensors', 'x/../../secret.safetensors']\n"
        "print(json.dumps({n: fp.get_full_path('starcaster_sec', n) for n in names}))\n"
    ).replace("{secret!r}", repr(str(tmp_path / "secret.safetensors").lstrip("/")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=comfyui)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found.pop("ok.safetensors") == str(inside / "ok.safetensors")
    for name, path in found.items():
        assert path is None or Path(path).resolve().is_relative_to(inside), f"{name} -> {path}"


# -- nothing happens at import -------------------------------------------------------------
IMPORT_PROBE = r"""
import asyncio, builtins, importlib, importlib.util, json, os, socket, subprocess, sys, threading
events = []
def refuse(kind):
    def f(*args, **kwargs):
        events.append(f"{kind} {args[:2]!r}"[:300])
        raise OSError(f"{kind} blocked by the import test")
    return f
socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect")
socket.create_connection = refuse("connect")
socket.getaddrinfo = refuse("dns")
subprocess.Popen.__init__ = refuse("subprocess")
os.system = refuse("system")
os.execv = refuse("exec")
os.posix_spawn = refuse("spawn")

comfyui, pack, base = sys.argv[1:4]
sys.path.append(comfyui)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import folder_paths
for sub in ("output", "input", "temp", "models"):
    os.makedirs(os.path.join(base, sub), exist_ok=True)
folder_paths.set_output_directory(os.path.join(base, "output"))
folder_paths.set_input_directory(os.path.join(base, "input"))
folder_paths.set_temp_directory(os.path.join(base, "temp"))
folder_paths.models_dir = os.path.join(base, "models")
import comfy.model_management, comfy.model_patcher, comfy.ops, comfy.utils, comfy_api.latest  # what nodes import
threads = {t.name for t in threading.enumerate()}
modules = set(sys.modules)

spec = importlib.util.spec_from_file_location("pack_under_test", os.path.join(pack, "__init__.py"),
                                              submodule_search_locations=[pack])
module = importlib.util.module_from_spec(spec)
sys.modules["pack_under_test"] = module
spec.loader.exec_module(module)
after_root = sorted(set(sys.modules) - modules)
extension = asyncio.run(module.comfy_entrypoint())
nodes = asyncio.run(extension.get_node_list())
schemas = [n.GET_SCHEMA().node_id for n in nodes]
print(json.dumps({"events": events, "nodes": schemas, "root_imports": after_root,
                  "new_modules": sorted(set(sys.modules) - modules),
                  "new_threads": sorted({t.name for t in threading.enumerate()} - threads)}))
"""


def test_import_downloads_runs_and_writes_nothing(tmp_path):
    comfyui = os.environ.get("COMFYUI_DIR")
    if not comfyui:
        pytest.skip("COMFYUI_DIR is not set: run with `bash tools/test.sh`")
    pack = tmp_path / "pack"  # a private copy: other work in the checkout cannot race the listing
    pack.mkdir()
    shutil.copy2(REPO_ROOT / "__init__.py", pack)
    for sub in ("nodes", "starcaster_core", "js"):
        if (REPO_ROOT / sub).is_dir():
            shutil.copytree(REPO_ROOT / sub, pack / sub, ignore=shutil.ignore_patterns("__pycache__"))
    home, base = tmp_path / "home", tmp_path / "base"
    home.mkdir()
    before = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "XDG_"))}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(home / "numba"))
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE, comfyui, str(pack), str(base)], capture_output=True,
                         text=True, timeout=300, env=env, cwd=comfyui)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["events"] == [], f"network or processes at import/registration: {report['events']}"
    assert "STARCasterARSampler" in report["nodes"]
    assert report["root_imports"] == ["pack_under_test"], "importing the pack root must import nothing else"
    heavy = [m for m in report["new_modules"] if m.split(".")[0] in ("librosa", "numba", "cv2", "subprocess")
             or ".synthetic" in m or ".train" in m or ".bench" in m or ".eval" in m]
    assert not heavy, f"registering the nodes imported {heavy}: keep heavy and offline-only modules lazy"
    assert report["new_threads"] == [], report["new_threads"]
    after = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*"))
    assert after == before, f"files appeared in the pack: {sorted(set(after) - set(before))}"
    assert not any(home.rglob("*")), f"files appeared in HOME: {list(home.rglob('*'))[:10]}"
    written = [p for p in base.rglob("*") if p.is_file()]
    assert not written, f"files written under the ComfyUI base dir: {written[:10]}"
