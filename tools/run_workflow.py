"""Run a workflow of workflows/ headless in a real ComfyUI and copy the video it saves.

    python tools/run_workflow.py --comfyui PATH workflows/starcaster_portrait_to_video.json --out out/demo.mp4
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

from comfy_host import ComfyServer, ui_to_api  # tools/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", type=Path)
    p.add_argument("--comfyui", required=True, help="the ComfyUI tree (tools/host.sh builds one)")
    p.add_argument("--out", type=Path, default=Path("out/starcaster.mp4"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with ComfyServer(args.comfyui) as server:
        for f in (ROOT / "workflows" / "inputs").iterdir():
            server.copy_input(f)
        prompt = ui_to_api(json.loads(args.workflow.read_text()), server.object_info())
        history = server.run(prompt, timeout=1800)
        videos = [f for f in server.output_files(history) if f.suffix == ".mp4"]
        if not videos:
            sys.exit(f"the workflow saved no .mp4; outputs: {server.output_files(history)}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(videos[0], args.out)
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
