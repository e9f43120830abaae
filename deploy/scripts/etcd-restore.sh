#!/usr/bin/env bash
# Restores the chart's bundled etcd StatefulSet from a snapshot (disaster recovery: every
# member is rebuilt from the same snapshot as a NEW cluster). UNTESTED on a real cluster.
#
#   deploy/scripts/etcd-restore.sh -n NAMESPACE [-r RELEASE] -f SNAPSHOT.db
#
# Steps (each printed): scale the coordinator and etcd to 0; for each member, run a one-off pod
# on its PVC that receives the snapshot (`kubectl cp` into a debian-slim init container),
# wipes the old data dir and runs `etcdutl snapshot restore` with that member's name and the
# cluster's initial-cluster wiring; scale etcd back; wait for it; scale the coordinator back.
# Leases granted after the snapshot are lost with it: their slots are NOT in the restored
# quota, and devices reported after it are not registered — reconcile with the stations'
# journals (docs/operations.md, "Restore").
set -euo pipefail
NS=""; RELEASE=flashgate; SNAP=""
while getopts "n:r:f:" opt; do
  case $opt in
    n) NS=$OPTARG ;; r) RELEASE=$OPTARG ;; f) SNAP=$OPTARG ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
  esac
done
if [ -z "$NS" ] || [ ! -f "$SNAP" ]; then sed -n '2,14p' "$0"; exit 2; fi
full=$RELEASE-flashgate
case $RELEASE in *flashgate*) full=$RELEASE ;; esac
sts=$full-etcd
k() { kubectl -n "$NS" "$@"; }
step() { printf '\n== %s\n' "$*"; }

replicas=$(k get statefulset "$sts" -o jsonpath='{.spec.replicas}')
coord_replicas=$(k get deployment "$full-coordinator" -o jsonpath='{.spec.replicas}')
image=$(k get statefulset "$sts" -o jsonpath='{.spec.template.spec.containers[0].image}')
initial_cluster=$(k get statefulset "$sts" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="ETCD_INITIAL_CLUSTER")].value}')
token=$(k get statefulset "$sts" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="ETCD_INITIAL_CLUSTER_TOKEN")].value}')
uid=$(k get statefulset "$sts" -o jsonpath='{.spec.template.spec.securityContext.runAsUser}')

step "stopping the coordinator ($coord_replicas replicas) and etcd ($replicas members)"
k scale deployment "$full-coordinator" --replicas=0
k scale statefulset "$sts" --replicas=0
k wait --for=delete pod -l "app.kubernetes.io/component=etcd,app.kubernetes.io/instance=$RELEASE" --timeout=300s || true

for i in $(seq 0 $((replicas - 1))); do
  member=$sts-$i
  peer=$(printf '%s' "$initial_cluster" | tr ',' '\n' | sed -n "s/^$member=//p")
  pod=$member-restore
  step "restoring $member (peer URL $peer) on PVC data-$member"
  k delete pod "$pod" --ignore-not-found --wait
  k apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
  labels: {app.kubernetes.io/component: etcd-restore}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: $uid, runAsGroup: $uid, fsGroup: $uid, seccompProfile: {type: RuntimeDefault}}
  initContainers:
    - name: receive
      image: debian:bookworm-slim
      command: [sh, -c, 'until [ -f /snap/received ]; do sleep 1; done; rm -rf /var/lib/etcd/data']
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: data, mountPath: /var/lib/etcd}, {name: snap, mountPath: /snap}]
  containers:
    - name: restore
      image: $image
      command:
        - /usr/local/bin/etcdutl
        - snapshot
        - restore
        - /snap/snapshot.db
        - --name=$member
        - --initial-cluster=$initial_cluster
        - --initial-cluster-token=$token
        - --initial-advertise-peer-urls=$peer
        - --data-dir=/var/lib/etcd/data
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: data, mountPath: /var/lib/etcd}, {name: snap, mountPath: /snap}]
  volumes:
    - {name: data, persistentVolumeClaim: {claimName: data-$member}}
    - {name: snap, emptyDir: {}}
YAML
  k wait --for=jsonpath='{.status.initContainerStatuses[0].state.running}' "pod/$pod" --timeout=300s
  k cp -c receive "$SNAP" "$pod:/snap/snapshot.db"
  k exec -c receive "$pod" -- touch /snap/received
  k wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=300s
  k logs "$pod" -c restore
  k delete pod "$pod" --wait
done

step "starting etcd"
k scale statefulset "$sts" --replicas="$replicas"
k rollout status statefulset "$sts" --timeout=600s
step "starting the coordinator"
k scale deployment "$full-coordinator" --replicas="$coord_replicas"
k rollout status deployment "$full-coordinator" --timeout=600s
echo "etcd-restore: done. Check: flashgate orders status; reconcile installs made after the snapshot."
