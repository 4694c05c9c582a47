#!/usr/bin/env bash
# Set everything up (the cached ComfyUI host) and run the portrait workflow headless:
#   bash tools/demo.sh            -> out/starcaster_demo.mp4 (video + the speech as its sound)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST=$(bash tools/host.sh | tail -n 1)
exec "$HOST/venv/bin/python" tools/run_workflow.py --comfyui "$HOST/comfyui" \
    workflows/starcaster_portrait_to_video.json --out out/starcaster_demo.mp4 "$@"
