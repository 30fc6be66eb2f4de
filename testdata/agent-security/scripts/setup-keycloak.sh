#!/usr/bin/env bash
# Creates the agent-security OIDC client in the Permit Platform's Keycloak by hand.
# For debugging only: the Helm chart's post-install Job does the same. Do not run both.
set -euo pipefail

KEYCLOAK_URL="${KEYCLOAK_URL:-https://permit.yourcompany.com/auth}"
REALM="${KEYCLOAK_REALM:-permit-platform}"
ADMIN_USER="${KEYCLOAK_ADMIN_USER:-admin}"
CLIENT_ID="agent-security-platform"
NAMESPACE="agent-security"
DOMAIN=""

usage() {
  cat <<USAGE
Usage: $0 --agent-security-domain DOMAIN [options]

Creates the OIDC client "${CLIENT_ID}" in Keycloak and stores its secret in the
Kubernetes secret agent-security-oidc-secret.

Options:
  --agent-security-domain DOMAIN  your MCP Gateway domain, e.g. mcp.yourcompany.com (required)
  --keycloak-url URL              Keycloak base URL (default: \$KEYCLOAK_URL or
                                  https://permit.yourcompany.com/auth)
  --realm NAME                    Keycloak realm (default: ${REALM})
  --namespace NS                  namespace of the release (default: ${NAMESPACE})
  -h, --help                      show this help

The admin password is read from \$KEYCLOAK_ADMIN_PASSWORD.
USAGE
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --agent-security-domain) DOMAIN="$2"; shift 2 ;;
    --keycloak-url) KEYCLOAK_URL="$2"; shift 2 ;;
    --realm) REALM="$2"; shift 2 ;;
    --namespace) NAMESPACE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

[[ -n "${DOMAIN}" ]] || { echo "--agent-security-domain is required (see --help)" >&2; exit 2; }
: "${KEYCLOAK_ADMIN_PASSWORD:?set KEYCLOAK_ADMIN_PASSWORD (kubectl get secret global-infrastructure-secret ...)}"

echo "Requesting an admin token from ${KEYCLOAK_URL}"
TOKEN=$(curl -fsS -X POST "${KEYCLOAK_URL}/realms/master/protocol/openid-connect/token" \
  -d grant_type=password -d client_id=admin-cli -d "username=${ADMIN_USER}" \
  --data-urlencode "password=${KEYCLOAK_ADMIN_PASSWORD}" | jq -r .access_token)

existing=$(curl -fsS -H "Authorization: Bearer ${TOKEN}" \
  "${KEYCLOAK_URL}/admin/realms/${REALM}/clients?clientId=${CLIENT_ID}" | jq length)
if [[ "${existing}" -gt 0 ]]; then
  echo "Client ${CLIENT_ID} already exists in realm ${REALM}; nothing to do."
  exit 0
fi

echo "Creating client ${CLIENT_ID} for https://app.${DOMAIN}"
curl -fsS -X POST -H "Authorization: Bearer ${TOKEN}" -H "Content-Type: application/json" \
  "${KEYCLOAK_URL}/admin/realms/${REALM}/clients" \
  -d "{\"clientId\":\"${CLIENT_ID}\",\"redirectUris\":[\"https://app.${DOMAIN}/*\"],\"publicClient\":false}"

uuid=$(curl -fsS -H "Authorization: Bearer ${TOKEN}" \
  "${KEYCLOAK_URL}/admin/realms/${REALM}/clients?clientId=${CLIENT_ID}" | jq -r '.[0].id')
secret=$(curl -fsS -H "Authorization: Bearer ${TOKEN}" \
  "${KEYCLOAK_URL}/admin/realms/${REALM}/clients/${uuid}/client-secret" | jq -r .value)

kubectl create secret generic agent-security-oidc-secret -n "${NAMESPACE}" \
  --from-literal=OIDC_CLIENT_SECRET="${secret}" --dry-run=client -o yaml | kubectl apply -f -
echo "Done."
