#!/usr/bin/env bash
# Makes target/helm-venv with the pinned tools deploy/helm/check.py needs (Helm's library
# via helm-python-sdk, kubernetes-validate, checkov). Idempotent: does nothing when the venv
# already has exactly deploy/helm/requirements.txt. Needs python3 (>= 3.10) with venv, and PyPI.
#
#   deploy/helm/setup-venv.sh && target/helm-venv/bin/python deploy/helm/check.py
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/helm-venv
REQ=deploy/helm/requirements.txt
STAMP=$VENV/.requirements.sha256
log() { printf 'helm-venv: %s\n' "$*"; }

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "up to date ($VENV)"
  exit 0
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  log "error: $PYTHON >= 3.10 with the venv module is needed (Debian: apt-get install python3-venv)"
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
log "installing $REQ"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
echo "$want" > "$STAMP"
log "done: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("helm-python-sdk", "kubernetes-validate", "checkov")))')"
