"""Renders the Hush chart with the real Helm engine (helm-python-sdk's libhelm, no helm binary)
and validates every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), then checks what the chart promises: replicas and a
PodDisruptionBudget for each stateless service, probes and resource requests everywhere, the
tenant's NetworkPolicy admitting only the three public services and the MTA, key files from a
Secret. Run by crates/hush/tests/deployment.rs; by hand: python3 deploy/helm/validate.py

Needs: pip install helm-python-sdk kubernetes-validate pyyaml (.ci/run installs them).
"""
import json
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent / "hush"
STATELESS = ["control-api", "membership-api", "bulk-api", "edge"]
PUBLIC = ["control-api", "membership-api", "bulk-api"]

# Stand-ins for what an operator passes (keys from `hush deploy-init`, database URLs).
KEYS = {
    name: "stand-in"
    for name in [
        "control-api.key.pem", "control-api.pub.pem", "membership-api.key.pem",
        "membership-api.pub.pem", "bulk-api.key.pem", "bulk-api.pub.pem", "tenant-seal.keys",
        "audit-signing.key", "bulk-seal.key", "membership-seal.key", "control-seal.key",
        "idp-jwks.json", "decision.key.pem",
    ]
}
DATABASE = {
    "adminUrl": "postgres://hush:pw@postgres:5432/postgres",
    "controlUrl": "postgres://hush_control:pw@postgres:5432/hush_control",
    "membershipUrl": "postgres://hush_membership:pw@postgres:5432/hush_membership",
    "bulkUrl": "postgres://hush_bulk:pw@postgres:5432/hush_bulk",
    "tenantUrl": "postgres://hush_tenant:pw@postgres:5432/hush_tenant",
}

CASES = {
    "values.yaml (Postgres in the release)": {
        "keys": KEYS, "database": DATABASE, "postgres": {"adminPassword": "pw"},
    },
    "values-external-postgres.yaml": {
        **yaml.safe_load((CHART / "values-external-postgres.yaml").read_text()),
        "existingKeysSecret": "hush-keys",
    },
    "an IdP on a company CA (idp.caKey)": {
        "keys": {**KEYS, "idp-ca.pem": "stand-in"}, "database": DATABASE,
        "postgres": {"adminPassword": "pw"},
        "idp": {"issuer": "https://idp.corp.example", "audience": "hush", "clientId": "hush-web",
                "scope": "openid email profile", "caKey": "idp-ca.pem"},
    },
}


def fail(msg):
    raise AssertionError(msg)


def render(values):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="hush", namespace="hush", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def check(docs, external, ca_key=None):
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for d in docs:
        kubernetes_validate.validate(d, kubernetes_validate.utils.latest_version(), strict=True)
    kinds = sorted({k for k, _ in by})
    if external and ("StatefulSet", "hush-postgres") in by:
        fail("an external Postgres release still runs its own")
    for svc in STATELESS + ["isolated-tenant"]:
        dep = by.get(("Deployment", f"hush-{svc}")) or fail(f"no Deployment for {svc}")
        spec = dep["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for probe in ["readinessProbe", "livenessProbe"]:
                c.get(probe) or fail(f"{svc}: no {probe}")
            c.get("resources", {}).get("requests") or fail(f"{svc}: no resource requests")
        if spec["securityContext"].get("runAsUser") != 10001:
            fail(f"{svc} does not run as the image's user")
        if svc in STATELESS:
            if dep["spec"]["replicas"] < 2:
                fail(f"{svc}: fewer than 2 replicas by default")
            by.get(("PodDisruptionBudget", f"hush-{svc}")) or fail(f"{svc}: no PDB")
        if svc != "edge":
            vols = [v for v in spec["volumes"] if "secret" in v]
            vols or fail(f"{svc}: keys not from a Secret")
    policy = by.get(("NetworkPolicy", "hush-isolated-tenant")) or fail("no tenant NetworkPolicy")
    rules = policy["spec"]["ingress"]
    api = [r for r in rules if {"protocol": "TCP", "port": 8083} in r["ports"]]
    smtp = [r for r in rules if {"protocol": "TCP", "port": 2525} in r["ports"]]
    if len(api) != 1 or len(smtp) != 1 or len(rules) != 2:
        fail("the tenant's policy has one rule for its API and one for SMTP, nothing else")
    admitted = sorted(
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in api[0]["from"]
    )
    if admitted != sorted(PUBLIC):
        fail(f"the tenant's API admits {admitted}, not exactly the three public services")
    if not all("ipBlock" in p for p in smtp[0]["from"]):
        fail("the tenant's SMTP admits more than the MTA's addresses")
    tenant_svc = by[("Service", "hush-isolated-tenant")]
    if tenant_svc["spec"]["type"] != "ClusterIP" or [p["port"] for p in tenant_svc["spec"]["ports"]] != [8083]:
        fail("the tenant's API Service is internal and carries the API alone")
    smtp_svc = by[("Service", "hush-tenant-smtp")]
    if [p["port"] for p in smtp_svc["spec"]["ports"]] != [2525]:
        fail("the SMTP Service carries SMTP alone")
    # The IdP by its issuer everywhere a user token is checked; its CA file, when given,
    # mounted and named in each of those and the edge.
    for svc in PUBLIC + ["edge"]:
        spec = by[("Deployment", f"hush-{svc}")]["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        if env.get("HUSH_OIDC_ISSUER") != "https://idp.corp.example":
            fail(f"{svc}: HUSH_OIDC_ISSUER is not the IdP's issuer")
        ca = env.get("HUSH_OIDC_CA_FILE")
        if ca_key:
            mounted = [
                item["path"] for v in spec.get("volumes", []) if "secret" in v
                for item in v["secret"].get("items", [])
            ]
            if ca != f"/run/secrets/hush/{ca_key}" or ca_key not in mounted:
                fail(f"{svc}: the IdP's CA file is not mounted and named")
        elif ca is not None:
            fail(f"{svc}: a CA file without idp.caKey")
    jobs = [d for d in docs if d["kind"] == "Job"]
    if [j["spec"]["template"]["spec"]["containers"][0]["args"] for j in jobs] != [["db-setup"]]:
        fail("one db-setup Job")
    return len(docs), kinds


def main():
    passed = failed = 0
    for name, values in CASES.items():
        try:
            n, kinds = check(render(values), "external" in name, values.get("idp", {}).get("caKey"))
            print(f"ok   {name}: {n} manifests valid ({', '.join(kinds)})")
            passed += 1
        except Exception as e:  # report every case, then fail
            print(f"FAIL {name}: {e}")
            failed += 1
    lint = helm.lint(str(CHART), CASES["values.yaml (Postgres in the release)"], strict=True)
    errors = [m for m in lint.get("messages") or [] if m.get("severity", 0) >= 2]
    if errors or lint.get("errors"):
        print(f"FAIL helm lint --strict: {errors or lint.get('errors')}")
        failed += 1
    else:
        print("ok   helm lint --strict")
        passed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
