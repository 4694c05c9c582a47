#!/usr/bin/env bash
# Run the test suite inside the cached ComfyUI test host (built on first use by host.sh).
#   bash tools/test.sh                      # everything
#   bash tools/test.sh tests/test_frontend.py -x    # extra args go to pytest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST=$(bash tools/host.sh | tail -n 1)
[ -f "$HOST/.starcaster-host-complete" ] || { echo "tools/host.sh gave no host: $HOST" >&2; exit 1; }
export STARCASTER_HOST="$HOST"
export COMFYUI_DIR="$HOST/comfyui"
export STARCASTER_CHROMIUM="${STARCASTER_CHROMIUM:-/usr/bin/chromium}"
"$HOST/venv/bin/ruff" check --quiet . # lint first: style errors fail fast
exec "$HOST/venv/bin/python" -m pytest -q "$@"
