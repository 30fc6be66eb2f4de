#!/usr/bin/env bash
# Checks the cluster before `helm install`: tools, Kubernetes version, ingress controller,
# namespaces and secrets the chart expects.
set -euo pipefail

NAMESPACE="${NAMESPACE:-agent-security}"
PERMIT_NAMESPACE="${PERMIT_NAMESPACE:-permit-platform}"
PDP_URL="${PDP_URL:-https://pdp.yourcompany.com}"
failed=0

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "Usage: $0   (env: NAMESPACE, PERMIT_NAMESPACE, PDP_URL)"
  exit 0
fi

check() {
  local what="$1"; shift
  if "$@" >/dev/null 2>&1; then
    echo "ok   ${what}"
  else
    echo "FAIL ${what}"
    failed=1
  fi
}

check "kubectl is installed" command -v kubectl
check "helm is installed" command -v helm
check "cluster is reachable" kubectl version
check "Kubernetes is 1.25 or newer" bash -c \
  "kubectl version -o json | jq -e '(.serverVersion.minor | rtrimstr(\"+\") | tonumber) >= 25'"
check "an nginx ingress class exists" bash -c "kubectl get ingressclass -o name | grep -q nginx"
check "namespace ${PERMIT_NAMESPACE} exists" kubectl get namespace "${PERMIT_NAMESPACE}"
check "Keycloak admin secret exists" \
  kubectl get secret global-infrastructure-secret -n "${PERMIT_NAMESPACE}"
check "Keycloak service exists" kubectl get service keycloak -n "${PERMIT_NAMESPACE}"
check "TLS secret agent-security-tls exists" \
  kubectl get secret agent-security-tls -n "${NAMESPACE}"
check "PDP answers at ${PDP_URL}" curl -fsS --max-time 5 "${PDP_URL}/healthy"

if [[ "${failed}" -ne 0 ]]; then
  echo "Some checks failed; fix them before installing." >&2
  exit 1
fi
echo "All checks passed."
