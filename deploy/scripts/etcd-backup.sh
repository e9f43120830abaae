#!/usr/bin/env bash
# Takes an etcd snapshot of flashgate's store and checks it.
#
#   deploy/scripts/etcd-backup.sh -n NAMESPACE [-r RELEASE] [-o DIR]      # bundled etcd (Helm chart)
#   ETCDCTL_ENDPOINTS=http://etcd-0:2379 deploy/scripts/etcd-backup.sh -o DIR   # any etcd
#
# Bundled etcd: port-forwards to member 0 (the distroless etcd image has no shell or tar, so
# the snapshot is taken by a local etcdctl through the forward; port-forward reaches the pod's
# loopback and is not subject to the NetworkPolicy). Needs kubectl and etcdctl/etcdutl 3.5
# (Debian: apt-get install etcd-client). Writes DIR/flashgate-etcd-<UTC time>.db and prints
# its status. The snapshot holds sealed device keys: store it encrypted, apart from the KEK.
set -euo pipefail
NS=""; RELEASE=flashgate; OUTDIR=.; MEMBER=0; PORT=${LOCAL_PORT:-23790}
while getopts "n:r:o:m:" opt; do
  case $opt in
    n) NS=$OPTARG ;; r) RELEASE=$OPTARG ;; o) OUTDIR=$OPTARG ;; m) MEMBER=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
command -v etcdctl >/dev/null || { echo "etcd-backup: etcdctl not found (apt-get install etcd-client)" >&2; exit 1; }
mkdir -p "$OUTDIR"
out="$OUTDIR/flashgate-etcd-$(date -u +%Y%m%dT%H%M%SZ).db"

pf_pid=""
cleanup() { if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
if [ -z "${ETCDCTL_ENDPOINTS:-}" ]; then
  [ -n "$NS" ] || { echo "etcd-backup: -n NAMESPACE (or ETCDCTL_ENDPOINTS) is required" >&2; exit 2; }
  name=$RELEASE-flashgate-etcd
  case $RELEASE in *flashgate*) name=$RELEASE-etcd ;; esac
  kubectl -n "$NS" port-forward "pod/$name-$MEMBER" "$PORT:2379" >/dev/null &
  pf_pid=$!
  for _ in $(seq 50); do
    etcdctl --endpoints="http://127.0.0.1:$PORT" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  export ETCDCTL_ENDPOINTS=http://127.0.0.1:$PORT
fi
export ETCDCTL_API=3
# snapshot save talks to exactly one endpoint.
etcdctl --endpoints="${ETCDCTL_ENDPOINTS%%,*}" snapshot save "$out"
chmod 0600 "$out"
if command -v etcdutl >/dev/null; then
  etcdutl snapshot status "$out" -w table
else
  etcdctl snapshot status "$out" -w table
fi
sha256sum "$out" | tee "$out.sha256"
echo "etcd-backup: wrote $out"
