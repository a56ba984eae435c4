#!/usr/bin/env bash
# Prove that the wheel works outside the checkout: build the sdist and the wheel from it, install the
# wheel into a fresh virtual environment in a temporary folder (no --system-site-packages, no
# editable install, nothing from the checkout on sys.path) and run .ci/smoke.sh there.
#
#   .ci/smoke_wheel.sh            (or: make smoke)
#   KEEP=1 .ci/smoke_wheel.sh     keeps the temporary folder for a look afterwards
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fgmm-smoke.XXXXXX")"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "smoke folder: $WORK"; fi
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }
# pip without the notes about index folders this machine's pip.conf names but does not hold
pip() { "$WORK/venv/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

step "fresh virtual environment in $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
pip install -q --upgrade pip build

step "sdist, then the wheel built from the sdist (isolated build)"
"$PY" -m build -q --outdir "$WORK/dist" "$REPO" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
if grep -E "[A-Za-z]*Warning\b" "$WORK/build.log"; then echo "the build printed warnings (above)"; exit 1; fi
ls "$WORK/dist"

step "install the wheel (tested torch pair from requirements/torch.txt)"
pip install -q -c "$REPO/requirements/torch.txt" "$WORK"/dist/fgmm-*.whl

step "smoke test outside the checkout"
cd "$WORK"
PATH="$WORK/venv/bin:$PATH" FGMM_CACHE="$WORK/cache" FGMM_REPO="$REPO" bash "$REPO/.ci/smoke.sh"
step "wheel smoke test passed"
