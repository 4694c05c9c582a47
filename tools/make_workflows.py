"""Write the example workflows (ComfyUI UI format) in workflows/ from a compact graph spec.

Widget values and socket types come from a running ComfyUI's /object_info, so the files match
the nodes exactly:  python tools/make_workflows.py http://127.0.0.1:8188
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "workflows"
PORTRAIT, SPEECH = "starcaster_portrait.png", "starcaster_speech.wav"
MODEL = "starcaster-demo (embedded)"

# node key -> (class, widget values by name, {input: (source node key, output slot)}, column, row)
Graph = dict[str, tuple[str, dict, dict, int, int]]


def common(identity: dict[str, tuple], camera: dict) -> Graph:
    return {
        "model": ("STARCasterModelLoader", {"model_name": MODEL, "precision": "auto"}, {}, 0, 0),
        "audio": ("LoadAudio", {"audio": SPEECH}, {}, 0, 3),
        **identity,
        "features": ("STARCasterAudioFeatures", {"fps": 25.0},
                     {"model": ("model", 0), "audio": ("audio", 0)}, 1, 2),
        "cond": ("STARCasterLipSyncConditioning", {"lip_sync_strength": 1.0, "motion_intensity": 1.0},
                 {"audio_features": ("features", 0), "identity": ("identity", 0)}, 2, 1),
        "camera": ("STARCasterCameraTrajectory", {"frames": 0, **camera}, {"audio_features": ("features", 0)}, 2, 2),
        "sampler": ("STARCasterARSampler",
                    {"seed": 0, "audio_guidance": 1.0, "identity_guidance": 1.0, "chunk_size": 4,
                     "context_window": 8},
                    {"model": ("model", 0), "conditioning": ("cond", 0), "camera": ("camera", 0)}, 3, 1),
        "video": ("CreateVideo", {"fps": 25.0},
                  {"images": ("sampler", 0), "fps": ("sampler", 1), "audio": ("audio", 0)}, 4, 1),
        "save": ("SaveVideo", {"filename_prefix": "video/starcaster", "format": "mp4", "codec": "h264"},
                 {"video": ("video", 0)}, 5, 1),
    }


def streamed(graph: Graph) -> Graph:
    """The same graph rendering straight to an MP4 (STARCaster Render Video) instead of
    sampler -> CreateVideo -> SaveVideo: memory holds one chunk, for long speeches."""
    out = {k: v for k, v in graph.items() if k not in ("sampler", "video", "save")}
    _, widgets, inputs, col, row = graph["sampler"]
    out["render"] = ("STARCasterRenderVideo", {**widgets, "filename_prefix": "starcaster"},
                     {**inputs, "audio": ("audio", 0)}, col, row)
    return out


PORTRAIT_IDENTITY = {
    "image": ("LoadImage", {"image": PORTRAIT}, {}, 0, 1),
    "identity": ("STARCasterIdentityFromImage", {"crop": "center"},
                 {"model": ("model", 0), "image": ("image", 0)}, 1, 1),
}
EMBEDDING_IDENTITY = {
    "id_a": ("STARCasterRandomIdentity", {"seed": 7}, {"model": ("model", 0)}, 1, 0),
    "id_b": ("STARCasterRandomIdentity", {"seed": 21}, {"model": ("model", 0)}, 1, 1),
    "identity": ("STARCasterMixIdentity", {"weight": 0.3}, {"a": ("id_a", 0), "b": ("id_b", 0)}, 2, 0),
    "save_id": ("STARCasterSaveIdentity", {"filename_prefix": "mixed"}, {"identity": ("identity", 0)}, 3, 0),
}

NOD = json.dumps({"version": 1, "keyframes": [
    {"frame": f, "yaw": 0.0, "pitch": p, "roll": 0.0, "distance": 1.0}
    for f, p in ((0, 0.0), (18, 8.0), (36, -3.0), (54, 7.0), (72, -2.0), (90, 0.0))]})

WORKFLOWS = {
    "starcaster_portrait_to_video": common(PORTRAIT_IDENTITY, {"preset": "static", "amplitude": 1.0}),
    "starcaster_identity_embedding": common(EMBEDDING_IDENTITY, {"preset": "handheld", "amplitude": 1.0}),
    "starcaster_camera_orbit": common(PORTRAIT_IDENTITY, {"preset": "orbit_left", "amplitude": 1.0}),
    # an orbit (the preset) plus a nod drawn as keyframes in the camera editor (offsets on the orbit)
    "starcaster_orbit_nod": common(PORTRAIT_IDENTITY, {"preset": "orbit_left", "amplitude": 1.0, "keyframes": NOD}),
    "starcaster_render_to_file": streamed(common(PORTRAIT_IDENTITY, {"preset": "handheld", "amplitude": 1.0})),
}


def widget_names(info: dict) -> list[tuple[str, dict]]:
    """Inputs that are widgets, in the order the frontend stores their values."""
    out = []
    for group in ("required", "optional"):
        for name in info["input_order"].get(group, []):
            spec = info["input"][group][name]
            kind = spec[0]
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                out.append((name, spec[1] if len(spec) > 1 else {}))
    return out


def to_ui(graph: Graph, object_info: dict) -> dict:
    ids = {key: i + 1 for i, key in enumerate(graph)}
    nodes, links = [], []
    for key, (cls, widgets, inputs, col, row) in graph.items():
        info = object_info[cls]
        values = []
        for name, opts in widget_names(info):
            values.append(widgets.get(name, opts.get("default")))
            if opts.get("control_after_generate"):
                values.append("fixed")
        widget_set = {name for name, _ in widget_names(info)}
        node_inputs = []
        for group in ("required", "optional"):
            for name in info["input_order"].get(group, []):
                if name in inputs:
                    kind = info["input"][group][name][0]
                    entry = {"name": name, "type": kind, "link": None}
                    if name in widget_set:
                        entry["widget"] = {"name": name}
                    node_inputs.append(entry)
        if cls in ("LoadImage", "LoadAudio"):
            values.append(None)  # the upload button's value
        nodes.append({
            "id": ids[key], "type": cls, "pos": [40 + 360 * col, 60 + 300 * row], "size": [320, 200],
            "flags": {}, "order": 0, "mode": 0, "inputs": node_inputs,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
            "properties": {"Node name for S&R": cls}, "widgets_values": values,
        })
    by_id = {n["id"]: n for n in nodes}
    for key, (_, _, inputs, _, _) in graph.items():
        for name, (src, slot) in inputs.items():
            link_id = len(links) + 1
            src_node, dst_node = by_id[ids[src]], by_id[ids[key]]
            kind = src_node["outputs"][slot]["type"]
            links.append([link_id, ids[src], slot, ids[key],
                          [i["name"] for i in dst_node["inputs"]].index(name), kind])
            src_node["outputs"][slot]["links"].append(link_id)
            next(i for i in dst_node["inputs"] if i["name"] == name)["link"] = link_id
    for order, node in enumerate(nodes):
        node["order"] = order
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def main(url: str) -> None:
    object_info = json.load(urllib.request.urlopen(f"{url}/object_info"))
    for name, graph in WORKFLOWS.items():
        (OUT / f"{name}.json").write_text(json.dumps(to_ui(graph, object_info), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8188")
