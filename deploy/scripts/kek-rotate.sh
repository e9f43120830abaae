#!/usr/bin/env bash
# KEK rotation for a Helm install whose keys are in a Secret (docs/operations.md, "KEK rotation").
# Three phases, run in order; each is safe to re-run.
#
#   deploy/scripts/kek-rotate.sh -n NS [-r RELEASE] [-s SECRET] start    # new KEK, old one kept as previous
#   deploy/scripts/kek-rotate.sh -n NS [-r RELEASE] [-s SECRET] rewrap   # re-seal every stored secret
#   deploy/scripts/kek-rotate.sh -n NS [-r RELEASE] [-s SECRET] finish   # drop the previous KEK
#
# SECRET is the Secret holding kek.hex (default: the chart's <fullname>-keys; with
# secrets.existingSecret pass its name). The old KEK is copied to SECRET-kek-previous (for
# `--previous-kek-file`) before SECRET gets the new one. Back up the NEW KEK after `start`; destroy
# SECRET-kek-previous and every backup of the old KEK only after `finish`.
# Needs kubectl and helm (or run the helm commands it prints with your GitOps tool).
set -euo pipefail
NS=""; RELEASE=flashgate; SECRET=""; CHART=${CHART:-$(dirname "$0")/../helm/flashgate}
while getopts "n:r:s:" opt; do
  case $opt in
    n) NS=$OPTARG ;; r) RELEASE=$OPTARG ;; s) SECRET=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
PHASE=${1:-}
if [ -z "$NS" ] || [ -z "$PHASE" ]; then sed -n '2,15p' "$0"; exit 2; fi
full=$RELEASE-flashgate
case $RELEASE in *flashgate*) full=$RELEASE ;; esac
SECRET=${SECRET:-$full-keys}
PREV=$SECRET-kek-previous
k() { kubectl -n "$NS" "$@"; }
kek_of() { k get secret "$1" -o jsonpath='{.data.kek\.hex}' | base64 -d; }
# The KEK id the coordinator logs: first 4 bytes of SHA-256("flashgate-kek-id-v1" || key).
kek_id() {
  # shellcheck disable=SC2059,SC2001 # the format is the \xNN escapes of the key bytes
  { printf 'flashgate-kek-id-v1'; printf "$(sed 's/../\\x&/g' <<<"$1")"; } | sha256sum | cut -c1-8
}

case $PHASE in
  start)
    old=$(kek_of "$SECRET")
    if k get secret "$PREV" >/dev/null 2>&1; then
      echo "kek-rotate: $PREV exists: a rotation is under way (run rewrap, then finish)"
    else
      k create secret generic "$PREV" --from-literal=kek.hex="$old"
      k label secret "$PREV" app.kubernetes.io/part-of=flashgate
      new=$(head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n')
      k patch secret "$SECRET" --type=merge -p "{\"data\":{\"kek.hex\":\"$(printf '%s' "$new" | base64 -w0)\"}}"
      echo "kek-rotate: new KEK id $(kek_id "$new") in $SECRET; previous (id $(kek_id "$old")) in $PREV"
      echo "kek-rotate: BACK UP the new KEK now: kubectl -n $NS get secret $SECRET -o jsonpath='{.data.kek\\.hex}' | base64 -d"
    fi
    helm upgrade "$RELEASE" "$CHART" -n "$NS" --reuse-values \
      --set "secrets.previousKeks[0].secretName=$PREV" --set "secrets.previousKeks[0].key=kek.hex"
    k rollout restart "deployment/$full-coordinator"
    k rollout status "deployment/$full-coordinator" --timeout=600s
    ;;
  rewrap)
    # Run the rewrap inside a serving replica: same binary, store and key files, and the only
    # pods the etcd NetworkPolicy admits. The arguments are the pod's own `serve` flags minus
    # the serve-only ones.
    pod=$(k get pod -l "app.kubernetes.io/component=coordinator,app.kubernetes.io/instance=$RELEASE" \
      -o jsonpath='{.items[0].metadata.name}')
    mapfile -t args < <(k get pod "$pod" -o jsonpath='{range .spec.containers[0].args[*]}{@}{"\n"}{end}' |
      grep -E '^--(store|etcd-namespace|kek-file|previous-kek-file|signing-key-file|log-json)')
    grep -q -- '--previous-kek-file' <<<"${args[*]}" || { echo "kek-rotate: $pod has no --previous-kek-file: run start first" >&2; exit 1; }
    k exec "$pod" -c coordinator -- /usr/local/bin/flashgate-coordinator rewrap "${args[@]}"
    ;;
  finish)
    helm upgrade "$RELEASE" "$CHART" -n "$NS" --reuse-values --set 'secrets.previousKeks=null'
    k rollout restart "deployment/$full-coordinator"
    k rollout status "deployment/$full-coordinator" --timeout=600s
    echo "kek-rotate: replicas run without the previous KEK. Now delete it and its backups:"
    echo "  kubectl -n $NS delete secret $PREV"
    ;;
  *) echo "kek-rotate: phase must be start, rewrap or finish" >&2; exit 2 ;;
esac
