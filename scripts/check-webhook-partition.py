#!/usr/bin/env python3
"""Checks the webhook configurations of a rendered chart against its policy.

For a `helm template` output (a file of YAML documents) this checks, for many namespaces made
from every label key and value the policy's environments mention (plus unrelated values and
absent labels) and for every resource the webhooks handle, that:

  - a namespace excluded by the chart (release namespace, kube-system, webhook.excludeNamespaces)
    is matched by no webhook entry;
  - every other namespace is matched by exactly one entry per resource and configuration
    (no double calls, no gaps), and that entry's failurePolicy is the one of the namespace's
    mode under the policy's first-match rule (Fail for enforce, else Ignore, unless the
    values say otherwise: --enforce-policy / --other-policy), except for the Namespace
    entries, which are Fail in every mode and tier (a Namespace write admitted unreviewed
    could forge a break-glass approval or lower a namespace's mode);
  - the Namespace entries' matchConditions, when there are any, send label changes too;
  - the pod and workload entries carry the one matchCondition `create-or-image-change`, which
    sends every CREATE and only the UPDATEs that change an image (every container list and
    image volumes of the pod spec, for controllers their template's, for CronJobs their job
    template's) or, for Pods, the provenance annotation: other UPDATEs (labels, finalizers,
    scale) must not fail while the webhook is down;

and a few invariants of every entry (admissionReviewVersions, sideEffects, timeoutSeconds,
matchPolicy, reinvocationPolicy, caBundle or the cert-manager annotation, the Service or an
https URL with the configuration's path). With
--tls-generated, also that the caBundle is the ca.crt of the rendered TLS Secret.

Usage: check-webhook-partition.py RENDER.yaml --namespace NS [--exclude NS ...]
Exit status 0 when all checks pass, 1 otherwise (each failure printed).
"""

import argparse
import base64
import itertools
import json
import sys

import yaml

RESOURCES = {
    # Ephemeral containers are pinned like the Pod's own (issue 8, item 2).
    "MutatingWebhookConfiguration": [
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("", "namespaces"),
        # Their status and finalize subresources write labels and annotations too.
        ("", "namespaces/status"),
        ("", "namespaces/finalize"),
    ],
    "ValidatingWebhookConfiguration": [
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("", "namespaces"),
        ("", "namespaces/status"),
        ("", "namespaces/finalize"),
    ],
}


def requirement_matches(req, labels):
    key, op, values = req["key"], req["operator"], req.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown operator {op}")


def selector_matches(selector, labels):
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.get("matchExpressions") or [])


def rule_covers(rule, group, resource):
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    return ("*" in groups or group in groups) and ("*" in resources or resource in resources)


def namespaces_to_try(environments, release_ns, excluded):
    """Label sets from every key/value the selectors mention, plus 'other' and absent."""
    values_by_key = {}
    for env in environments:
        sel = env.get("namespaceSelector") or {}
        for key, value in (sel.get("matchLabels") or {}).items():
            values_by_key.setdefault(key, set()).add(str(value))
        for req in sel.get("matchExpressions") or []:
            values_by_key.setdefault(req["key"], set()).update(str(v) for v in req.get("values") or [])
    values_by_key.pop("kubernetes.io/metadata.name", None)
    name_values = sorted(set(excluded) | {"payments", "other-ns"})
    for env in environments:
        sel = env.get("namespaceSelector") or {}
        if "kubernetes.io/metadata.name" in (sel.get("matchLabels") or {}):
            name_values.append(str(sel["matchLabels"]["kubernetes.io/metadata.name"]))
        for req in sel.get("matchExpressions") or []:
            if req["key"] == "kubernetes.io/metadata.name":
                name_values.extend(str(v) for v in req.get("values") or [])
    name_values = sorted(set(name_values))
    keys = sorted(values_by_key)
    choices = [[None, "zz-unrelated"] + sorted(values_by_key[k]) for k in keys]
    total = 1
    for c in choices:
        total *= len(c)
    if total * len(name_values) > 200000:
        raise SystemExit(f"too many label combinations to enumerate ({total * len(name_values)})")
    for name in name_values:
        for combo in itertools.product(*choices):
            labels = {"kubernetes.io/metadata.name": name}
            for key, value in zip(keys, combo):
                if value is not None:
                    labels[key] = value
            yield labels


def image_change_condition_problems(entry, workloads):
    """What the pod/workload entry's matchConditions miss (textual: the API server's own
    dry run checks that the CEL compiles, and tests/kube_cluster.rs what it admits)."""
    conditions = entry.get("matchConditions") or []
    if [c.get("name") for c in conditions] != ["create-or-image-change"]:
        return [f"matchConditions {[c.get('name') for c in conditions]}, want exactly [create-or-image-change]: "
                "without it every UPDATE (labels, finalizers, scale) fails while the webhook is down"]
    expression = conditions[0]["expression"]
    needed = ["oldObject == null ||", "s.initContainers", "s.containers", "s.ephemeralContainers", "v.image.reference"]
    resources = {resource for _, resource in workloads}
    if "pods" in resources:
        needed += ["'provenance-gate.dev/provenance'", "request.kind.kind == 'Pod'"]
    if "cronjobs" in resources:
        needed.append("o.spec.jobTemplate.spec.template.spec")
    if resources & {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs"}:
        needed.append("o.spec.template.spec")
    return [f"matchCondition create-or-image-change does not compare {n}" for n in needed if n not in expression]


def expected_mode(policy, labels):
    for env in policy.get("environments") or []:
        if selector_matches(env.get("namespaceSelector"), labels):
            return env["mode"], env["name"]
    return policy.get("defaultMode", "enforce"), "(default)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("render")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--enforce-policy", default="Fail")
    ap.add_argument("--other-policy", default="Ignore")
    ap.add_argument("--policy-file", help="policy.yaml to use when the chart renders no ConfigMap")
    ap.add_argument("--tls-generated", action="store_true")
    args = ap.parse_args()

    with open(args.render) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    failures = []

    policy_text = None
    if args.policy_file:
        with open(args.policy_file) as f:
            policy_text = f.read()
    for d in docs:
        if d["kind"] == "ConfigMap" and "policy.yaml" in (d.get("data") or {}):
            policy_text = d["data"]["policy.yaml"]
        if d["kind"] == "ConfigMap":
            for key, value in (d.get("data") or {}).items():
                if key.endswith(".json"):
                    try:
                        json.loads(value)
                    except ValueError as e:
                        failures.append(f"ConfigMap {d['metadata']['name']} key {key}: invalid JSON: {e}")
    if policy_text is None:
        raise SystemExit("no policy ConfigMap in the render and no --policy-file")
    policy = yaml.safe_load(policy_text)

    configs = {d["kind"]: d for d in docs if d["kind"] in RESOURCES}
    if set(configs) != set(RESOURCES):
        failures.append(f"expected both webhook configurations, found {sorted(configs)}")

    secret_ca = None
    for d in docs:
        if d["kind"] == "Secret" and d.get("type") == "kubernetes.io/tls":
            secret_ca = (d.get("data") or {}).get("ca.crt")

    for kind, config in configs.items():
        annotations = (config.get("metadata") or {}).get("annotations") or {}
        names = [w["name"] for w in config["webhooks"]]
        if len(names) != len(set(names)):
            failures.append(f"{kind}: duplicate webhook names {names}")
        for w in config["webhooks"]:
            where = f"{kind} {w['name']}"
            if w.get("admissionReviewVersions") != ["v1"]:
                failures.append(f"{where}: admissionReviewVersions {w.get('admissionReviewVersions')}")
            if w.get("sideEffects") != "NoneOnDryRun":
                failures.append(f"{where}: sideEffects {w.get('sideEffects')}")
            if w.get("matchPolicy") != "Equivalent":
                failures.append(f"{where}: matchPolicy {w.get('matchPolicy')}")
            if not 1 <= int(w.get("timeoutSeconds", 0)) <= 30:
                failures.append(f"{where}: timeoutSeconds {w.get('timeoutSeconds')}")
            if kind == "MutatingWebhookConfiguration" and w.get("reinvocationPolicy") != "IfNeeded":
                failures.append(f"{where}: reinvocationPolicy {w.get('reinvocationPolicy')}")
            client = w.get("clientConfig") or {}
            path = "/mutate" if kind == "MutatingWebhookConfiguration" else "/validate"
            if ("service" in client) == ("url" in client):
                failures.append(f"{where}: clientConfig needs exactly one of service and url")
            elif "url" in client and not (client["url"].startswith("https://") and client["url"].endswith(path)):
                failures.append(f"{where}: clientConfig.url {client['url']} is not https://...{path}")
            elif "service" in client and client["service"].get("path") != path:
                failures.append(f"{where}: clientConfig.service.path {client['service'].get('path')}, want {path}")
            ca = client.get("caBundle")
            if not ca and "cert-manager.io/inject-ca-from" not in annotations:
                failures.append(f"{where}: neither a caBundle nor cert-manager CA injection")
            if ca:
                try:
                    pem = base64.b64decode(ca, validate=True).decode()
                    if "BEGIN CERTIFICATE" not in pem:
                        failures.append(f"{where}: caBundle is not a PEM certificate")
                except ValueError:
                    failures.append(f"{where}: caBundle is not base64")
            if args.tls_generated and ca != secret_ca:
                failures.append(f"{where}: caBundle differs from the TLS Secret's ca.crt")
            if w.get("objectSelector"):
                failures.append(f"{where}: unexpected objectSelector")
            if any(rule_covers(r, "", "namespaces") for r in w.get("rules") or []):
                conditions = w.get("matchConditions") or []
                # Conditions are ANDed: a single one must let label changes through.
                if conditions and not (
                    len(conditions) == 1 and "object.metadata.labels != oldObject.metadata.labels" in conditions[0]["expression"]
                ):
                    failures.append(f"{where}: matchConditions do not send Namespace label changes")

            workloads = [
                (group, resource)
                for group, resource in RESOURCES[kind]
                if not resource.startswith("namespaces") and any(rule_covers(r, group, resource) for r in w.get("rules") or [])
            ]
            if workloads:
                failures.extend(f"{where}: {problem}" for problem in image_change_condition_problems(w, workloads))

    excluded = set([args.namespace, "kube-system"] + args.exclude)
    checked = 0
    for labels in namespaces_to_try(policy.get("environments") or [], args.namespace, excluded):
        name = labels["kubernetes.io/metadata.name"]
        mode, env = expected_mode(policy, labels)
        for kind, config in configs.items():
            for group, resource in RESOURCES[kind]:
                if resource.startswith("namespaces"):
                    want = "Fail"
                else:
                    want = args.enforce_policy if mode == "enforce" else args.other_policy
                hits = [
                    w
                    for w in config["webhooks"]
                    if any(rule_covers(r, group, resource) for r in w.get("rules") or [])
                    and selector_matches(w.get("namespaceSelector"), labels)
                ]
                checked += 1
                what = f"{kind} {group or 'core'}/{resource} in namespace {json.dumps(labels, sort_keys=True)}"
                if name in excluded:
                    if hits:
                        failures.append(f"{what}: excluded namespace matched by {[w['name'] for w in hits]}")
                    continue
                if len(hits) != 1:
                    failures.append(
                        f"{what} (mode {mode}, environment {env}): matched by {len(hits)} entries {[w['name'] for w in hits]}, want exactly 1"
                    )
                    continue
                if hits[0]["failurePolicy"] != want:
                    failures.append(
                        f"{what} (mode {mode}, environment {env}): {hits[0]['name']} has failurePolicy {hits[0]['failurePolicy']}, want {want}"
                    )

    for failure in failures[:50]:
        print(f"  FAIL {failure}")
    if len(failures) > 50:
        print(f"  ... and {len(failures) - 50} more")
    entries = sum(len(c["webhooks"]) for c in configs.values())
    print(f"  webhook partition: {checked} (namespace, resource) pairs against {entries} entries: "
          f"{'ok' if not failures else f'{len(failures)} problem(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
