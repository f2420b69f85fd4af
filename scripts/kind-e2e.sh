#!/usr/bin/env bash
# End to end on a throwaway kind cluster, for machines with Docker: build the
# image, load it into kind, run RabbitMQ and PostgreSQL in the cluster, install
# the chart, apply the example SaverBinding, publish the example messages from
# a Job, and check that the savers stored them.  Not run by scripts/test (it
# needs a Docker engine); tests/test_chart.py only shellchecks it.
#
#   scripts/kind-e2e.sh
#
# Needs docker, kind, kubectl and helm on PATH.  Environment:
#   KIND_CLUSTER   cluster name (default brain-storm-e2e); created if missing
#   KEEP_CLUSTER=1 leave the cluster running afterwards (default: delete it
#                  when this script created it)
#   E2E_TIMEOUT    seconds to wait for each step (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${KIND_CLUSTER:-brain-storm-e2e}"
timeout="${E2E_TIMEOUT:-300}"
namespace=brain-storm
release=saver
# The tag the chart and examples/saverbinding.yaml use by default.
image="brain-storm:$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)"
# Fresh passwords for this run's servers; they only ever reach Secrets.
db_password="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
mq_password="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "${tool}" >/dev/null || die "${tool} is required"
done

created=0
cleanup() {
  local status=$?
  if [[ ${status} -ne 0 ]]; then
    log "failed; the operator's and savers' logs:"
    kubectl -n "${namespace}" logs "deployment/${release}-brain-storm-saver" \
      --tail=50 >&2 || true
    kubectl -n "${namespace}" logs deployment/results --tail=50 >&2 || true
  fi
  if [[ ${created} -eq 1 && "${KEEP_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "${cluster}" >&2 || true
  fi
  exit "${status}"
}
trap cleanup EXIT

# ---- cluster and image ------------------------------------------------------
if ! kind get clusters | grep -qx "${cluster}"; then
  log "creating kind cluster ${cluster}"
  kind create cluster --name "${cluster}" --wait 120s
  created=1
fi
kubectl config use-context "kind-${cluster}" >/dev/null

log "building ${image}"
docker build -t "${image}" .
kind load docker-image "${image}" --name "${cluster}"

kubectl create namespace "${namespace}" --dry-run=client -o yaml | kubectl apply -f -

# ---- RabbitMQ and PostgreSQL, as plain manifests ------------------------------
kubectl -n "${namespace}" create secret generic e2e-servers \
  --from-literal=db-password="${db_password}" \
  --from-literal=mq-password="${mq_password}" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "${namespace}" apply -f - <<'MANIFESTS'
apiVersion: apps/v1
kind: Deployment
metadata: {name: rabbitmq}
spec:
  selector: {matchLabels: {app: rabbitmq}}
  template:
    metadata: {labels: {app: rabbitmq}}
    spec:
      containers:
        - name: rabbitmq
          image: rabbitmq:3.13
          env:
            - {name: RABBITMQ_DEFAULT_USER, value: saver}
            - name: RABBITMQ_DEFAULT_PASS
              valueFrom: {secretKeyRef: {name: e2e-servers, key: mq-password}}
          ports: [{containerPort: 5672}]
          readinessProbe:
            exec: {command: [rabbitmq-diagnostics, -q, check_port_connectivity]}
            periodSeconds: 5
            timeoutSeconds: 10
---
apiVersion: v1
kind: Service
metadata: {name: rabbitmq}
spec:
  selector: {app: rabbitmq}
  ports: [{port: 5672}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgresql}
spec:
  selector: {matchLabels: {app: postgresql}}
  template:
    metadata: {labels: {app: postgresql}}
    spec:
      containers:
        - name: postgresql
          image: postgres:16
          env:
            - {name: POSTGRES_USER, value: saver}
            - {name: POSTGRES_DB, value: brain_storm}
            - name: POSTGRES_PASSWORD
              valueFrom: {secretKeyRef: {name: e2e-servers, key: db-password}}
          ports: [{containerPort: 5432}]
          readinessProbe:
            exec: {command: [pg_isready, -U, saver, -d, brain_storm]}
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata: {name: postgresql}
spec:
  selector: {app: postgresql}
  ports: [{port: 5432}]
MANIFESTS
for server in rabbitmq postgresql; do
  kubectl -n "${namespace}" rollout status "deployment/${server}" --timeout="${timeout}s"
done

# ---- the chart ------------------------------------------------------------------
# The CRD first, as docs/install.md says for upgrades too.
kubectl apply --server-side -f deploy/crds/
helm upgrade --install "${release}" deploy/helm/brain-storm-saver \
  --namespace "${namespace}" \
  --set image.pullPolicy=Never \
  --set "operator.watchNamespaces={${namespace}}" \
  --wait --timeout "${timeout}s"

# ---- the example binding, with this run's URLs ------------------------------------
service="${namespace}.svc.cluster.local"
kubectl -n "${namespace}" create secret generic brain-storm-database \
  --from-literal=url="postgresql://saver:${db_password}@postgresql.${service}:5432/brain_storm" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "${namespace}" create secret generic brain-storm-queue \
  --from-literal=url="amqp://saver:${mq_password}@rabbitmq.${service}:5672/%2F" \
  --dry-run=client -o yaml | kubectl apply -f -
# The example's own Secrets hold placeholders: apply only its SaverBinding,
# the file's last document.
binding="$(sed -n '/^apiVersion: brain-storm.io\//,$p' examples/saverbinding.yaml)"
grep -q '^kind: SaverBinding$' <<<"${binding}" || die "no SaverBinding in the example"
kubectl -n "${namespace}" apply -f - <<<"${binding}"
kubectl -n "${namespace}" wait saverbinding/results --for=condition=Ready \
  --timeout="${timeout}s"

# ---- publish the example messages from a Job ----------------------------------------
# One ConfigMap per topic folder, mounted as /messages/<topic>.
volumes="" mounts=""
for folder in examples/messages/*/; do
  topic="$(basename "${folder}")"
  kubectl -n "${namespace}" create configmap "messages-${topic//_/-}" \
    --from-file="${folder}" --dry-run=client -o yaml | kubectl apply -f -
  volumes+="        - {name: ${topic//_/-}, configMap: {name: messages-${topic//_/-}}}"$'\n'
  mounts+="            - {name: ${topic//_/-}, mountPath: /messages/${topic}}"$'\n'
done
kubectl -n "${namespace}" delete job publish --ignore-not-found
kubectl -n "${namespace}" apply -f - <<JOB
apiVersion: batch/v1
kind: Job
metadata: {name: publish}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: publish
          image: ${image}
          imagePullPolicy: Never
          command: [python, -m, brain_storm.saver, publish, /messages]
          env:
            - name: BRAIN_STORM_QUEUE_URL
              valueFrom: {secretKeyRef: {name: brain-storm-queue, key: url}}
          volumeMounts:
${mounts}      volumes:
${volumes}
JOB
kubectl -n "${namespace}" wait job/publish --for=condition=Complete --timeout="${timeout}s"
kubectl -n "${namespace}" logs job/publish

# ---- the rows arrived -------------------------------------------------------------------
# Read back through the saver's own API, from a Job holding the database
# Secret; it polls until every example topic is there, or gives up.
kubectl -n "${namespace}" create configmap e2e-check --dry-run=client -o yaml \
  --from-literal=check.py="
import sys, time
from brain_storm.saver import Saver

wanted = {'user', 'pose', 'feelings', 'color_image', 'depth_image'}
saver, found, deadline = Saver(), set(), time.monotonic() + ${timeout}
while not wanted <= found and time.monotonic() < deadline:
    time.sleep(2)
    for user in saver.get_users():
        found.add('user')
        for snapshot in saver.get_snapshots(user['user_id']):
            found.update(saver.get_one_snapshot(
                user['user_id'], snapshot['snapshot_id'])['results'])
print('stored:', ' '.join(sorted(found)))
sys.exit(0 if wanted <= found else 1)
" | kubectl apply -f -
kubectl -n "${namespace}" delete job check --ignore-not-found
kubectl -n "${namespace}" apply -f - <<JOB
apiVersion: batch/v1
kind: Job
metadata: {name: check}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: ${image}
          imagePullPolicy: Never
          command: [python, /check/check.py]
          env:
            - name: BRAIN_STORM_DATABASE_URL
              valueFrom: {secretKeyRef: {name: brain-storm-database, key: url}}
          volumeMounts: [{name: check, mountPath: /check}]
      volumes: [{name: check, configMap: {name: e2e-check}}]
JOB
if ! kubectl -n "${namespace}" wait job/check --for=condition=Complete \
    --timeout="$(( timeout + 60 ))s"; then
  kubectl -n "${namespace}" logs job/check >&2 || true
  die "the example messages did not all arrive"
fi
kubectl -n "${namespace}" logs job/check
log "passed: every example topic was stored in PostgreSQL"
