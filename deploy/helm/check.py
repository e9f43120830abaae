#!/usr/bin/env python3
"""Offline checks of the flashgate Helm chart (no cluster, no helm binary).

    target/helm-venv/bin/python deploy/helm/check.py [--keep-going]

For each values file in deploy/helm/ci/ it:
  1. lints the chart with Helm's own linter (helm-python-sdk bundles the Helm Go library),
     strict: warnings fail;
  2. renders it (the `helm template` equivalent, release "flashgate", namespace "flashgate");
  3. asserts the deployment properties the chart promises (replicas, anti-affinity, gRPC
     probes, hardening, etcd wiring, Secrets, NetworkPolicies…);
  4. validates every rendered object against the Kubernetes API schemas with
     kubernetes-validate, strict (unknown fields fail), for each version in K8S_VERSIONS;
  5. runs checkov on the rendered manifests (and on deploy/docker/Dockerfile) and fails on any finding not in
     deploy/helm/checkov-skips.yaml; every skip needs a reason there and a mention in
     deploy/helm/README.md, and a skip that no longer matches anything fails too;
  6. checks the Grafana dashboard (dashboards/flashgate-overview.json): it parses, every panel
     has a query, and every metric and label a query names is one the coordinator or the
     station registers (read from their `register_*!` calls), and the ConfigMap carries it
     unchanged when `grafana.dashboard.enabled`.

    target/helm-venv/bin/python deploy/helm/check.py --dashboard FILE   # step 6 on FILE only

Exit status 0 only if everything passed. Rendered manifests are left in target/helm-check/.
Set up the tools with deploy/helm/setup-venv.sh.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART = HERE / "flashgate"
CI_VALUES = HERE / "ci"
SKIPS_FILE = HERE / "checkov-skips.yaml"
README = HERE / "README.md"
OUT = ROOT / "target" / "helm-check"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
DASHBOARD = CHART / "dashboards" / "flashgate-overview.json"
# Crates whose `register_*!` calls are the metrics a dashboard may use.
METRIC_SOURCES = [ROOT / "coordinator" / "src", ROOT / "station-worker" / "src"]

RELEASE = "flashgate"
NAMESPACE = "flashgate"
# The chart's kubeVersion floor (native gRPC probes are GA in 1.27) and a current release.
K8S_VERSIONS = ["1.27.0", "1.33.0"]
LINT_KUBE_VERSION = "v1.33.0"
# Kinds from CRDs: no schema in kubernetes-validate; checked structurally below instead.
CRD_API_GROUPS = {"monitoring.coreos.com", "cert-manager.io"}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}")


def ok(message: str) -> None:
    print(f"  ok   {message}")


def check(condition: bool, message: str) -> None:
    if condition:
        ok(message)
    else:
        fail(message)


# ---------------------------------------------------------------------------- helm


def lint_chart(values: dict, label: str) -> None:
    from helm_python.chart import lint

    report = lint(
        str(CHART),
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version=LINT_KUBE_VERSION,
    )
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"severity": 3, "path": "", "error": e} for e in report.get("errors") or []]
    for m in problems:
        fail(f"[{label}] helm lint: {m.get('path')}: {m.get('error')}")
    infos = [m for m in report.get("messages", []) if m.get("severity", 0) < 2]
    for m in infos:
        print(f"  info helm lint: {m.get('path')}: {m.get('error')}")
    if not problems:
        ok(f"[{label}] helm lint --strict (kube {LINT_KUBE_VERSION})")


def render_chart(values: dict) -> dict[str, str]:
    from helm_python.chart import Chart

    with Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def split_objects(rendered: dict[str, str]) -> tuple[list[tuple[str, dict]], str]:
    """(template path, object) for every manifest, and the rendered NOTES.txt."""
    objects: list[tuple[str, dict]] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ValueError(f"{path}: rendered a document that is not an object: {doc!r}")
            objects.append((path, doc))
    return objects, notes


# ---------------------------------------------------------------------- assertions


def by_kind(objects: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [o for _, o in objects if o["kind"] == kind]


def one(objects: list[tuple[str, dict]], kind: str, suffix: str) -> dict | None:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found[0] if len(found) == 1 else None


def check_hardened_pod(label: str, name: str, pod: dict) -> None:
    psc = pod.get("securityContext", {})
    check(pod.get("automountServiceAccountToken") is False, f"[{label}] {name}: no service account token")
    check(psc.get("runAsNonRoot") is True, f"[{label}] {name}: pod runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"[{label}] {name}: seccomp RuntimeDefault")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        check(
            sc.get("readOnlyRootFilesystem") is True
            and sc.get("runAsNonRoot") is True
            and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"],
            f"[{label}] {name}/{c['name']}: read-only root, non-root, no escalation, caps drop ALL",
        )
        res = c.get("resources", {})
        check(
            all(k in res.get("requests", {}) for k in ("cpu", "memory"))
            and all(k in res.get("limits", {}) for k in ("cpu", "memory")),
            f"[{label}] {name}/{c['name']}: cpu/memory requests and limits",
        )


def assert_properties(label: str, values: dict, objects: list[tuple[str, dict]], notes: str) -> None:
    existing_etcd = bool(values.get("etcd", {}).get("endpoints"))
    existing_secret = bool(values.get("secrets", {}).get("existingSecret"))

    for _, o in objects:
        if o["kind"] not in ("Namespace",):
            if o["metadata"].get("namespace") != NAMESPACE:
                fail(f"[{label}] {o['kind']}/{o['metadata']['name']}: metadata.namespace is not the release namespace")

    dep = one(objects, "Deployment", "-coordinator")
    if dep is None:
        fail(f"[{label}] exactly one coordinator Deployment")
        return
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    check(spec["replicas"] == values.get("coordinator", {}).get("replicaCount", 3), f"[{label}] coordinator replicas")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check(bool(anti), f"[{label}] coordinator pod anti-affinity")
    check_hardened_pod(label, "coordinator", pod)
    (container,) = [c for c in pod["containers"] if c["name"] == "coordinator"]
    port = values.get("coordinator", {}).get("port", 7400)
    tls = values.get("tls", {}).get("enabled", True)
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        # Native gRPC probes speak no TLS: with TLS the probe is a TCP connect.
        kind = "tcpSocket" if tls else "grpc"
        check(
            container.get(probe, {}).get(kind, {}).get("port") == port,
            f"[{label}] coordinator {probe} is a {kind} probe on port {port}",
        )
    args = container["args"]
    if tls:
        mount = values.get("tls", {}).get("mountPath", "/etc/flashgate/tls")
        for flag in (f"--tls-cert={mount}/tls.crt", f"--tls-key={mount}/tls.key"):
            check(flag in args, f"[{label}] coordinator serves TLS ({flag})")
        check("--insecure-plaintext" not in args, f"[{label}] no --insecure-plaintext with TLS")
        want = values.get("tls", {}).get("existingSecret") or "flashgate-tls"
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        check(
            vols.get("tls", {}).get("secret", {}).get("secretName") == want,
            f"[{label}] the TLS Secret {want} is mounted",
        )
        certs = by_kind(objects, "Certificate")
        want_cert = values.get("tls", {}).get("certManager", {}).get("enabled", False)
        check(bool(certs) == bool(want_cert), f"[{label}] cert-manager Certificate only when asked ({bool(want_cert)})")
        if certs:
            check(certs[0]["spec"]["secretName"] == want, f"[{label}] the Certificate writes the mounted Secret")
    else:
        check("--insecure-plaintext" in args, f"[{label}] plain text is asked for by name")
    check(
        any(a.endswith("/operator-token") and a.startswith("--operator-token-file=") for a in args),
        f"[{label}] the bootstrap operator token is read from a file",
    )
    env = {e["name"] for e in container.get("env", [])}
    check("FLASHGATE_OPERATOR_TOKEN" not in env, f"[{label}] no operator token in the environment")
    check(args[0] == "serve", f"[{label}] coordinator runs `serve`")
    store = [a for a in args if a.startswith("--store=")]
    check(len(store) == 1 and store[0].startswith("--store=etcd:http"), f"[{label}] --store=etcd:… ({store})")
    for flag in ("--kek-file=", "--signing-key-file=", "--listen=0.0.0.0:"):
        check(any(a.startswith(flag) for a in args), f"[{label}] coordinator flag {flag}…")
    prev = values.get("secrets", {}).get("previousKeks", [])
    check(
        sum(a.startswith("--previous-kek-file=") for a in args) == len(prev),
        f"[{label}] one --previous-kek-file per secrets.previousKeks entry ({len(prev)})",
    )
    keys = {v["name"]: v for v in pod.get("volumes", [])}.get("keys", {}).get("secret", {})
    check(
        any(i.get("path") == "operator-token" for i in keys.get("items", [])),
        f"[{label}] operator token is mounted from the Secret as a file",
    )

    check(one(objects, "PodDisruptionBudget", "-coordinator") is not None, f"[{label}] coordinator PodDisruptionBudget")
    svc = one(objects, "Service", "-coordinator")
    check(svc is not None and any(p["name"] == "grpc" for p in svc["spec"]["ports"]), f"[{label}] coordinator Service with a grpc port")
    console = values.get("coordinator", {}).get("consolePort", 0)
    listen = [a for a in args if a.startswith("--console-listen=")]
    svc_console = [p for p in (svc or {}).get("spec", {}).get("ports", []) if p["name"] == "console"]
    if console:
        check(listen == [f"--console-listen=0.0.0.0:{console}"], f"[{label}] --console-listen on port {console} ({listen})")
        tls_on = values.get("tls", {}).get("enabled", True)
        check(
            len(svc_console) == 1 and svc_console[0]["port"] == console
            and svc_console[0].get("appProtocol") == ("https" if tls_on else "http"),
            f"[{label}] coordinator Service console port {console} ({svc_console})",
        )
    else:
        check(not listen and not svc_console, f"[{label}] no console unless coordinator.consolePort is set")

    sts = by_kind(objects, "StatefulSet")
    secrets = by_kind(objects, "Secret")
    policies = by_kind(objects, "NetworkPolicy")
    if existing_etcd:
        check(not sts, f"[{label}] existing etcd: no StatefulSet rendered")
        endpoints = ",".join(values["etcd"]["endpoints"])
        check(store == [f"--store=etcd:{endpoints}"], f"[{label}] existing etcd: --store uses etcd.endpoints")
        check(len(policies) == 1, f"[{label}] existing etcd: only the coordinator NetworkPolicy")
    else:
        check(len(sts) == 1, f"[{label}] one etcd StatefulSet")
        if sts:
            s = sts[0]
            n = s["spec"]["replicas"]
            check(n == 3 or n == values.get("etcd", {}).get("replicaCount"), f"[{label}] etcd members: {n}")
            check(bool(s["spec"].get("volumeClaimTemplates")), f"[{label}] etcd persistent volumes")
            check(s["spec"].get("podManagementPolicy") == "Parallel", f"[{label}] etcd members start in parallel")
            headless = one(objects, "Service", "-etcd-headless")
            check(
                headless is not None
                and headless["spec"].get("clusterIP") == "None"
                and s["spec"]["serviceName"] == headless["metadata"]["name"],
                f"[{label}] etcd headless Service is the StatefulSet's serviceName",
            )
            epod = s["spec"]["template"]["spec"]
            check_hardened_pod(label, "etcd", epod)
            eenv = {e["name"]: e.get("value") for e in epod["containers"][0]["env"]}
            cluster = (eenv.get("ETCD_INITIAL_CLUSTER") or "").split(",")
            names = [m.split("=", 1)[0] for m in cluster]
            expected = [f"{s['metadata']['name']}-{i}" for i in range(n)]
            check(names == expected, f"[{label}] etcd initial-cluster names every member ({names})")
            check(
                store and all(f"{m}." in store[0] for m in expected),
                f"[{label}] coordinator --store lists every etcd member",
            )
            check(one(objects, "PodDisruptionBudget", "-etcd") is not None, f"[{label}] etcd PodDisruptionBudget")
            if values.get("networkPolicy", {}).get("enabled", True):
                epol = one(objects, "NetworkPolicy", "-etcd")
                coord_sel = spec["selector"]["matchLabels"]
                froms = [p for rule in (epol or {}).get("spec", {}).get("ingress", []) for p in rule.get("from", [])]
                client_rules = [
                    r for r in (epol or {}).get("spec", {}).get("ingress", [])
                    if any(p.get("port") == 2379 for p in r.get("ports", []))
                ]
                check(
                    epol is not None
                    and all(r.get("from") for r in client_rules)
                    and any(p.get("podSelector", {}).get("matchLabels") == coord_sel for p in froms)
                    and all("podSelector" in p and "namespaceSelector" not in p for p in froms),
                    f"[{label}] etcd NetworkPolicy admits only the coordinator (and its own members)",
                )
    if existing_secret:
        check(not secrets, f"[{label}] existing Secret: chart makes no Secret")
    else:
        check(len(secrets) == 1, f"[{label}] chart makes the keys Secret")
        if secrets:
            data = secrets[0].get("data", {})
            import base64

            keys = {k: base64.b64decode(v).decode() for k, v in data.items()}
            for k in ("kek.hex", "signing.hex"):
                v = keys.get(k, "")
                check(len(v) == 64 and all(ch in "0123456789abcdef" for ch in v), f"[{label}] Secret {k} is 64 hex chars")
            check(len(keys.get("operator-token", "")) >= 24, f"[{label}] Secret operator-token is set")
    if values.get("networkPolicy", {}).get("enabled", True):
        cpol = one(objects, "NetworkPolicy", "-coordinator")
        ports = [p.get("port") for r in (cpol or {}).get("spec", {}).get("ingress", []) for p in r.get("ports", [])]
        check(cpol is not None and port in ports, f"[{label}] coordinator NetworkPolicy admits the gRPC port")
    sm = by_kind(objects, "ServiceMonitor")
    want_sm = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    check(bool(sm) == bool(want_sm), f"[{label}] ServiceMonitor rendered only when enabled ({bool(want_sm)})")
    check(
        "--endpoint" in notes and "FLASHGATE_TOKEN" in notes,
        f"[{label}] NOTES.txt shows the CLI --endpoint and the token",
    )


# ------------------------------------------------------------ Grafana dashboard

REGISTER = re.compile(
    r'register_(?:int_)?(counter|gauge|histogram)(?:_vec)?!\(\s*"([a-z_:][a-z0-9_:]*)"\s*,\s*"(?:[^"\\]|\\.)*"'
    r'(?:\s*,\s*&\[([^\]]*)\])?',
    re.S,
)
METRIC_NAME = re.compile(r"\b(flashgate_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(flashgate_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def exported_metrics() -> dict[str, set[str]]:
    """Every series name the coordinator and the station export, with its label names."""
    metrics: dict[str, set[str]] = {}
    for root in METRIC_SOURCES:
        for path in sorted(root.rglob("*.rs")):
            for kind, name, labels in REGISTER.findall(path.read_text()):
                names = set(re.findall(r'"([a-zA-Z_][a-zA-Z0-9_]*)"', labels or ""))
                if kind == "histogram":
                    metrics[f"{name}_bucket"] = names | {"le"}
                    metrics[f"{name}_sum"] = set(names)
                    metrics[f"{name}_count"] = set(names)
                else:
                    metrics[name] = names
    return metrics


def dashboard_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(panel title, expression, legend) of every query, template variables included."""
    out = []
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            if inner.get("type") == "row":
                continue
            targets = inner.get("targets") or []
            if not targets:
                fail(f"dashboard panel {inner.get('title')!r} has no query")
            for t in targets:
                out.append((inner.get("title", "?"), t.get("expr", ""), t.get("legendFormat", "")))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            expr = q.get("query", "") if isinstance(q, dict) else str(q)
            out.append((f"variable ${var.get('name')}", expr, ""))
    return out


def check_dashboard(path: Path) -> None:
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fail(f"dashboard {path.name}: does not parse: {e}")
        return
    for key in ("uid", "title", "panels"):
        check(bool(dashboard.get(key)), f"dashboard has a {key}")
    exported = exported_metrics()
    check(len(exported) >= 10, f"found the exported metrics in the sources ({len(exported)} series)")
    queries = dashboard_queries(dashboard)
    check(bool(queries), f"dashboard has queries ({len(queries)})")
    bad = 0
    for title, expr, legend in queries:
        names = set(METRIC_NAME.findall(expr))
        if not names:
            bad += 1
            fail(f"dashboard {title!r}: query names no flashgate metric: {expr!r}")
            continue
        labels_here: set[str] = set()
        for name in names:
            if name not in exported:
                bad += 1
                fail(f"dashboard {title!r}: {name} is not a metric the coordinator or station exports")
            else:
                labels_here |= exported[name]
        for name, matchers in SELECTOR.findall(expr):
            for label in MATCHER_LABEL.findall(matchers):
                if name in exported and label not in exported[name]:
                    bad += 1
                    fail(f"dashboard {title!r}: {name} has no label {label!r}")
        grouped: set[str] = set()
        for group in GROUPING.findall(expr):
            for label in (x.strip() for x in group.split(",")):
                if label and label not in labels_here:
                    bad += 1
                    fail(f"dashboard {title!r}: groups by {label!r}, which none of {sorted(names)} has")
                grouped.add(label)
        for label in LEGEND_LABEL.findall(legend):
            if label not in grouped:
                bad += 1
                fail(f"dashboard {title!r}: legend uses {{{{{label}}}}}, which the query does not keep")
    if bad == 0:
        ok(f"dashboard {path.name}: {len(queries)} queries name only exported metrics and labels")


def check_dashboard_configmap(label: str, values: dict, objects: list[tuple[str, dict]]) -> None:
    want = values.get("grafana", {}).get("dashboard", {}).get("enabled", False)
    maps = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-grafana-dashboard")]
    check(bool(maps) == bool(want), f"[{label}] Grafana dashboard ConfigMap rendered only when enabled ({bool(want)})")
    if maps:
        cm = maps[0]
        check(cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1", f"[{label}] dashboard ConfigMap has the sidecar label")
        check(
            cm.get("data", {}).get("flashgate-overview.json", "").strip() == DASHBOARD.read_text().strip(),
            f"[{label}] dashboard ConfigMap carries dashboards/flashgate-overview.json unchanged",
        )


# ------------------------------------------------------------ kubernetes-validate


def validate_objects(label: str, objects: list[tuple[str, dict]]) -> None:
    import kubernetes_validate

    for version in K8S_VERSIONS:
        bad = 0
        for path, obj in objects:
            group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
            what = f"{obj['kind']}/{obj['metadata']['name']} ({path})"
            if group in CRD_API_GROUPS:
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                bad += 1
                fail(f"[{label}] k8s {version}: {what}: {e.message} at {'.'.join(map(str, e.path))}")
            except Exception as e:  # schema missing for a kind, etc.
                bad += 1
                fail(f"[{label}] k8s {version}: {what}: {e}")
        crds = sum(1 for _, o in objects if o["apiVersion"].split("/")[0] in CRD_API_GROUPS)
        if not bad:
            ok(
                f"[{label}] kubernetes-validate --strict {version}: "
                f"{len(objects) - crds} objects valid"
                + (f" ({crds} CRD object(s) not schema-checked)" if crds else "")
            )


# --------------------------------------------------------------------- checkov


def load_skips() -> list[dict]:
    data = yaml.safe_load(SKIPS_FILE.read_text()) or {}
    skips = data.get("skips", [])
    readme = README.read_text()
    for s in skips:
        if not s.get("id") or not str(s.get("reason", "")).strip():
            fail(f"checkov-skips.yaml: entry without id or reason: {s}")
        if not s.get("resources"):
            fail(f"checkov-skips.yaml: {s.get('id')}: list the resources it applies to")
        if s.get("id") and s["id"] not in readme:
            fail(f"checkov-skips.yaml: {s['id']} is not justified in deploy/helm/README.md")
    return skips


def run_checkov(
    label: str, target: list[str], framework: str, skips: list[dict], used: set[int]
) -> None:
    checkov = Path(sys.executable).parent / "checkov"
    cmd = [
        str(checkov),
        *target,
        "--framework", framework,
        "--output", "json",
        "--compact",
        "--quiet",
        "--skip-download",
    ]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode not in (0, 1):
        fail(f"[{label}] checkov exited {proc.returncode}: {proc.stderr[-2000:]}")
        return
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        fail(f"[{label}] checkov printed no JSON: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
        return
    reports = report if isinstance(report, list) else [report]
    passed = failed_total = skipped = 0
    for r in reports:
        summary = r.get("summary", {})
        passed += summary.get("passed", 0)
        results = r.get("results", {})
        for finding in results.get("failed_checks", []):
            failed_total += 1
            cid, resource = finding["check_id"], finding["resource"]
            matched = None
            for i, s in enumerate(skips):
                if s.get("id") == cid and any(fnmatch.fnmatchcase(resource, pat) for pat in s.get("resources", [])):
                    matched = i
                    break
            if matched is None:
                fail(f"[{label}] checkov {cid} {resource}: {finding.get('check_name')} ({finding.get('file_path')})")
            else:
                used.add(matched)
                skipped += 1
                print(f"  skip checkov {cid} {resource} (justified in checkov-skips.yaml)")
    if passed == 0:
        fail(f"[{label}] checkov ran no check (is the output directory empty?)")
    else:
        message = (
            f"[{label}] checkov: {passed} passed, {failed_total} failed "
            f"({skipped} justified in checkov-skips.yaml, {failed_total - skipped} not)"
        )
        if failed_total == skipped:
            ok(message)
        else:
            print(f"  ---- {message}")


# ------------------------------------------------------------------------ main


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--dashboard":
        print(f"== dashboard ({sys.argv[2]})")
        check_dashboard(Path(sys.argv[2]))
        print("dashboard check: " + (f"{len(failures)} failure(s)" if failures else "passed"))
        return 1 if failures else 0
    try:
        import helm_python  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as e:
        print(f"check.py: {e}: run deploy/helm/setup-venv.sh and use target/helm-venv/bin/python")
        return 2
    from helm_python.chart import values_from_yaml

    variants = sorted(CI_VALUES.glob("*.yaml"))
    if not variants:
        print("check.py: no values files in deploy/helm/ci/")
        return 2
    if OUT.exists():
        shutil.rmtree(OUT)
    skips = load_skips()
    used: set[int] = set()

    for vf in variants:
        label = vf.stem
        print(f"== {label} ({vf.relative_to(ROOT)})")
        values = values_from_yaml(vf.read_text()) or {}
        lint_chart(values, label)
        try:
            rendered = render_chart(values)
            objects, notes = split_objects(rendered)
        except Exception as e:
            fail(f"[{label}] render: {e}")
            continue
        ok(f"[{label}] rendered {len(objects)} objects")
        outdir = OUT / label
        outdir.mkdir(parents=True)
        for i, (path, obj) in enumerate(objects):
            name = f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
            (outdir / name).write_text(yaml.safe_dump(obj, sort_keys=False))
        (OUT / f"{label}.NOTES.txt").write_text(notes)
        try:
            assert_properties(label, values, objects, notes)
        except Exception as e:  # a missing field is a failure, not a crash
            fail(f"[{label}] property checks: {type(e).__name__}: {e}")
        check_dashboard_configmap(label, values, objects)
        validate_objects(label, objects)
        run_checkov(label, ["--directory", str(outdir)], "kubernetes", skips, used)

    print(f"== Grafana dashboard ({DASHBOARD.relative_to(ROOT)})")
    check_dashboard(DASHBOARD)

    print("== container image (deploy/docker/Dockerfile)")
    run_checkov("Dockerfile", ["--file", str(DOCKERFILE)], "dockerfile", skips, used)

    for i, s in enumerate(skips):
        if i not in used:
            fail(f"checkov-skips.yaml: {s.get('id')} {s.get('resources')} matched no finding: remove it")

    print()
    if failures:
        print(f"helm chart checks: {len(failures)} failure(s)")
        for f in failures:
            print(f"  - {f}")
        return 1
    print(f"helm chart checks: all passed ({len(variants)} values files, k8s {', '.join(K8S_VERSIONS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
