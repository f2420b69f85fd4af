#!/usr/bin/env bash
# Build, cache, start and stop a local Kubernetes control plane for tests:
# etcd + kube-apiserver only (no kubelet, no controller-manager, no
# scheduler), in the spirit of controller-runtime's envtest.
#
#   scripts/control-plane.sh build        build/cache kube-apiserver (+ etcd if needed)
#   scripts/control-plane.sh start DIR    start etcd + kube-apiserver, state in DIR
#   scripts/control-plane.sh stop DIR     stop both and wait for them to exit
#   scripts/control-plane.sh status DIR   exit 0 when both processes are running
#   scripts/control-plane.sh paths        print the binaries that start would use
#
# After `start DIR`: `source DIR/env` (a path with a slash: a bare
# `source env` finds /usr/bin/env on PATH) gives KUBECONFIG, the API URL, an admin
# token and the pids; logs are DIR/etcd.log and DIR/kube-apiserver.log.
#
# Everything binds to 127.0.0.1 only.  kube-apiserver is built from the
# k8s.io/kubernetes Go module through the Go module proxy (no prebuilt
# binaries are downloaded); etcd comes from Debian's etcd-server package, or
# is built from go.etcd.io/etcd/server/v3 when that is not available.
#
# Environment:
#   BRAIN_STORM_CACHE        cache root (default $HOME/.cache/brain-storm)
#   CONTROL_PLANE_AUTHZ      kube-apiserver --authorization-mode (default AlwaysAllow; e.g. RBAC)
#   CONTROL_PLANE_GO         go binary (default: go on PATH, else /usr/local/go/bin/go)
#   CONTROL_PLANE_ETCD       etcd binary to use instead of /usr/bin/etcd
#   CONTROL_PLANE_BUILD_JOBS go build -p (default 2)
#   CONTROL_PLANE_KEEP_GO_CACHE=1  keep the Go module/build caches used for the build
#   CONTROL_PLANE_READY_TIMEOUT    seconds to wait for /readyz (default 120)
#   CONTROL_PLANE_EXTRA_ARGS       extra kube-apiserver flags (word-split)
set -euo pipefail

# ---- pinned versions -------------------------------------------------------
K8S_VERSION="v1.32.13"          # k8s.io/kubernetes module version
K8S_STAGING_VERSION="v0.32.13"  # matching k8s.io/<staging> published modules
ETCD_VERSION="v3.5.21"          # only used when Debian's etcd is not usable
WRAPPER_GO_DIRECTIVE="1.24"     # go.mod `go` line of the generated wrappers (needs `tool`)

# ---- configuration ---------------------------------------------------------
CACHE_ROOT="${BRAIN_STORM_CACHE:-${HOME}/.cache/brain-storm}"
K8S_DIR="${CACHE_ROOT}/k8s/${K8S_VERSION}"
BIN_DIR="${K8S_DIR}/bin"
APISERVER_BIN="${BIN_DIR}/kube-apiserver"
ETCD_BUILD_DIR="${CACHE_ROOT}/etcd/${ETCD_VERSION}"
BUILD_JOBS="${CONTROL_PLANE_BUILD_JOBS:-2}"
READY_TIMEOUT="${CONTROL_PLANE_READY_TIMEOUT:-120}"
AUTHZ_MODE="${CONTROL_PLANE_AUTHZ:-AlwaysAllow}"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_go() {
  if [[ -n "${CONTROL_PLANE_GO:-}" ]]; then
    printf '%s\n' "${CONTROL_PLANE_GO}"
  elif command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    printf '%s\n' /usr/local/go/bin/go
  else
    die "no Go toolchain found (set CONTROL_PLANE_GO)"
  fi
}

# run_go WORKDIR ARGS...: go with a private module/build cache under WORKDIR,
# never downloading another toolchain.
run_go() {
  local workdir="$1"; shift
  (
    cd "${workdir}"
    GOTOOLCHAIN=local \
    GOMODCACHE="${workdir}/.gomodcache" \
    GOCACHE="${workdir}/.gocache" \
    GOFLAGS="-trimpath -buildvcs=false -mod=mod" \
    CGO_ENABLED=0 \
    "${GO}" "$@"
  )
}

clean_go_caches() {
  local workdir="$1"
  if [[ "${CONTROL_PLANE_KEEP_GO_CACHE:-0}" == "1" ]]; then
    return 0
  fi
  log "removing Go caches in ${workdir} (set CONTROL_PLANE_KEEP_GO_CACHE=1 to keep)"
  run_go "${workdir}" clean -cache -modcache >/dev/null 2>&1 || true
  rm -rf "${workdir}/.gomodcache" "${workdir}/.gocache"
}

# ---- build -----------------------------------------------------------------
build_apiserver() {
  if [[ -x "${APISERVER_BIN}" ]]; then
    log "kube-apiserver ${K8S_VERSION} already built: ${APISERVER_BIN}"
    return 0
  fi
  local work="${K8S_DIR}/build"
  mkdir -p "${work}" "${BIN_DIR}"
  # Serialise concurrent builds (e.g. two test runs starting at once).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"${K8S_DIR}/.build.lock"
    flock 9
    if [[ -x "${APISERVER_BIN}" ]]; then
      exec 9>&-
      log "kube-apiserver ${K8S_VERSION} built meanwhile: ${APISERVER_BIN}"
      return 0
    fi
  fi
  GO="$(find_go)"
  log "building kube-apiserver ${K8S_VERSION} with $("${GO}" version)"

  # Fetch k8s.io/kubernetes to read its go.mod: it replaces every k8s.io/*
  # staging module with ./staging/src/k8s.io/<name>, which module zips do not
  # contain, so the wrapper replaces them with the published modules instead.
  cat > "${work}/go.mod" <<GOMOD
module brainstorm.local/kube-apiserver-build

go ${WRAPPER_GO_DIRECTIVE}
GOMOD
  rm -f "${work}/go.sum"
  local info k8s_gomod k8s_time
  info="$(run_go "${work}" mod download -json "k8s.io/kubernetes@${K8S_VERSION}")"
  k8s_gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"${info}")"
  k8s_time="$(sed -n 's/^[[:space:]]*"Time": "\(.*\)",\{0,1\}$/\1/p' <<<"${info}")"
  [[ -f "${k8s_gomod}" ]] || die "could not download k8s.io/kubernetes@${K8S_VERSION}"

  local staging
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "${k8s_gomod}" | sort -u)"
  [[ -n "${staging}" ]] || die "no staging replaces found in ${k8s_gomod}"

  {
    printf 'module brainstorm.local/kube-apiserver-build\n\n'
    printf 'go %s\n\n' "${WRAPPER_GO_DIRECTIVE}"
    printf 'tool k8s.io/kubernetes/cmd/kube-apiserver\n\n'
    printf 'require k8s.io/kubernetes %s\n\n' "${K8S_VERSION}"
    printf 'replace (\n'
    local m
    for m in ${staging}; do
      printf '\t%s => %s %s\n' "${m}" "${m}" "${K8S_STAGING_VERSION}"
    done
    printf ')\n'
  } > "${work}/go.mod"
  log "wrapper module: ${work}/go.mod ($(wc -w <<<"${staging}") staging replaces)"

  run_go "${work}" mod tidy
  # Version stamping as Kubernetes' own build does (hack/lib/version.sh);
  # without it /version reports v0.0.0-master.
  local major minor ldflags="-s -w" pkg
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${major}"
    ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
    ldflags+=" -X ${pkg}.gitCommit= -X ${pkg}.buildDate=${k8s_time:-1970-01-01T00:00:00Z}"
  done
  run_go "${work}" build -p "${BUILD_JOBS}" -ldflags="${ldflags}" \
    -o "${APISERVER_BIN}.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "${APISERVER_BIN}.tmp" "${APISERVER_BIN}"
  log "built ${APISERVER_BIN} ($(du -h "${APISERVER_BIN}" | cut -f1))"
  clean_go_caches "${work}"
  exec 9>&-
}

etcd_usable() {
  local bin="$1"
  [[ -x "${bin}" ]] && "${bin}" --version >/dev/null 2>&1
}

# Prints the etcd binary to use; installs or builds it when needed.
ensure_etcd() {
  if [[ -n "${CONTROL_PLANE_ETCD:-}" ]]; then
    etcd_usable "${CONTROL_PLANE_ETCD}" || die "CONTROL_PLANE_ETCD=${CONTROL_PLANE_ETCD} is not a working etcd"
    printf '%s\n' "${CONTROL_PLANE_ETCD}"; return 0
  fi
  if etcd_usable /usr/bin/etcd; then
    printf '%s\n' /usr/bin/etcd; return 0
  fi
  local built="${ETCD_BUILD_DIR}/bin/etcd"
  if etcd_usable "${built}"; then
    printf '%s\n' "${built}"; return 0
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's etcd-server"
    if { apt-get install -y etcd-server || { apt-get update && apt-get install -y etcd-server; }; } >&2 \
       && etcd_usable /usr/bin/etcd; then
      printf '%s\n' /usr/bin/etcd; return 0
    fi
    log "etcd-server from apt is not usable; building etcd ${ETCD_VERSION} instead"
  fi
  build_etcd >&2
  printf '%s\n' "${built}"
}

build_etcd() {
  GO="$(find_go)"
  local work="${ETCD_BUILD_DIR}/build"
  mkdir -p "${work}" "${ETCD_BUILD_DIR}/bin"
  cat > "${work}/go.mod" <<GOMOD
module brainstorm.local/etcd-build

go ${WRAPPER_GO_DIRECTIVE}

tool go.etcd.io/etcd/server/v3

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
GOMOD
  rm -f "${work}/go.sum"
  run_go "${work}" mod tidy
  run_go "${work}" build -p "${BUILD_JOBS}" -ldflags="-s -w" \
    -o "${ETCD_BUILD_DIR}/bin/etcd" go.etcd.io/etcd/server/v3
  clean_go_caches "${work}"
}

cmd_build() {
  build_apiserver
  local etcd
  etcd="$(ensure_etcd)"
  log "etcd: ${etcd} ($("${etcd}" --version | head -n1))"
}

# ---- start / stop ----------------------------------------------------------
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return 0
  fi
  local p i
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
      printf '%s\n' "${p}"; return 0
    fi
    : "${i}"
  done
  die "no free port found"
}

# gen_pki DIR: CA, serving cert for 127.0.0.1/localhost, admin client cert
# (O=system:masters), service-account key pair.
gen_pki() {
  local pki="$1"
  mkdir -p "${pki}"
  (
    cd "${pki}"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=brain-storm-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out ca.crt

    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
    printf '%s\n' "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null

    openssl ecparam -name prime256v1 -genkey -noout -out admin.key 2>/dev/null
    openssl req -new -key admin.key -subj "/O=system:masters/CN=admin" -out admin.csr
    printf '%s\n' "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 3650 -extfile admin.ext -out admin.crt 2>/dev/null

    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

    openssl rand -hex 24 > admin.token
    printf '%s,admin,admin-uid,system:masters\n' "$(cat admin.token)" > tokens.csv
    rm -f ./*.csr ./*.ext ./*.srl
  )
}

b64() { base64 -w0 < "$1"; }

write_kubeconfig() {
  local dir="$1" url="$2" pki="$1/pki"
  umask 077
  cat > "${dir}/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: brain-storm-test
  cluster:
    server: ${url}
    certificate-authority-data: $(b64 "${pki}/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "${pki}/admin.crt")
    client-key-data: $(b64 "${pki}/admin.key")
contexts:
- name: brain-storm-test
  context:
    cluster: brain-storm-test
    user: admin
current-context: brain-storm-test
KUBECONFIG
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# pid_matches PID DIR: the process still is one we started for DIR (guards
# against pid reuse before signalling it).
pid_matches() {
  local pid="$1" dir="$2"
  pid_alive "${pid}" || return 1
  [[ -r "/proc/${pid}/cmdline" ]] || return 0
  tr '\0' ' ' < "/proc/${pid}/cmdline" | grep -qF -- "${dir}"
}

wait_http() {
  # wait_http PID TIMEOUT DESCRIPTION CURL-ARGS...
  local pid="$1" timeout="$2" what="$3"; shift 3
  local deadline=$(( SECONDS + timeout ))
  while (( SECONDS < deadline )); do
    pid_alive "${pid}" || return 2
    if [[ "$(curl -sS --max-time 2 "$@" 2>/dev/null || true)" == "ok" ]]; then
      return 0
    fi
    sleep 0.2
  done
  log "timed out after ${timeout}s waiting for ${what}"
  return 1
}

cmd_start() {
  local dir="${1:-}"
  [[ -n "${dir}" ]] || die "usage: $0 start DIR"
  mkdir -p "${dir}"
  dir="$(cd "${dir}" && pwd -P)"
  if [[ -f "${dir}/env" ]]; then
    local old_etcd old_api
    old_etcd="$(sed -n 's/^export ETCD_PID=//p' "${dir}/env")"
    old_api="$(sed -n 's/^export APISERVER_PID=//p' "${dir}/env")"
    if pid_matches "${old_etcd}" "${dir}" || pid_matches "${old_api}" "${dir}"; then
      die "a control plane is already running in ${dir} (run: $0 stop ${dir})"
    fi
  fi
  command -v openssl >/dev/null 2>&1 || die "openssl is required"
  command -v curl >/dev/null 2>&1 || die "curl is required"

  build_apiserver
  local etcd_bin
  etcd_bin="$(ensure_etcd)"

  local t0=${SECONDS} t0ns
  t0ns="$(date +%s%N)"
  rm -rf "${dir}/etcd-data" "${dir}/pki" "${dir}/env" "${dir}/kubeconfig"
  gen_pki "${dir}/pki"

  local etcd_port etcd_peer_port api_port
  etcd_port="$(free_port)"
  etcd_peer_port="$(free_port)"
  api_port="$(free_port)"
  local etcd_url="http://127.0.0.1:${etcd_port}"
  local peer_url="http://127.0.0.1:${etcd_peer_port}"
  local api_url="https://127.0.0.1:${api_port}"

  # setsid: own process group/session, so the caller's job control or a
  # Ctrl-C does not hit them; stop() signals the recorded pids only.
  setsid "${etcd_bin}" \
    --name=brain-storm-test \
    --data-dir="${dir}/etcd-data" \
    --listen-client-urls="${etcd_url}" \
    --advertise-client-urls="${etcd_url}" \
    --listen-peer-urls="${peer_url}" \
    --initial-advertise-peer-urls="${peer_url}" \
    --initial-cluster="brain-storm-test=${peer_url}" \
    --initial-cluster-state=new \
    --listen-metrics-urls="" \
    </dev/null >"${dir}/etcd.log" 2>&1 &
  local etcd_pid=$!

  write_env() {
    umask 077
    {
      printf 'export KUBECONFIG=%q\n' "${dir}/kubeconfig"
      printf 'export CONTROL_PLANE_DIR=%q\n' "${dir}"
      printf 'export CONTROL_PLANE_URL=%q\n' "${api_url}"
      printf 'export CONTROL_PLANE_CA=%q\n' "${dir}/pki/ca.crt"
      printf 'export CONTROL_PLANE_TOKEN=%q\n' "$(cat "${dir}/pki/admin.token")"
      printf 'export ETCD_URL=%q\n' "${etcd_url}"
      printf 'export ETCD_PID=%s\n' "${etcd_pid}"
      printf 'export APISERVER_PID=%s\n' "${apiserver_pid:-}"
    } > "${dir}/env"
  }
  local apiserver_pid=""
  write_env

  if ! wait_http "${etcd_pid}" 30 "etcd" "${etcd_url}/health" -o /dev/null -w ok; then
    log "etcd failed to start; last lines of ${dir}/etcd.log:"
    tail -n 20 "${dir}/etcd.log" >&2 || true
    cmd_stop "${dir}" || true
    exit 1
  fi

  local -a extra=()
  if [[ -n "${CONTROL_PLANE_EXTRA_ARGS:-}" ]]; then
    read -r -a extra <<<"${CONTROL_PLANE_EXTRA_ARGS}"
  fi
  local pki="${dir}/pki"
  # Notes on flags:
  #  --endpoint-reconciler-type=none: the "kubernetes" Endpoints object may
  #    not hold a loopback address, so the reconciler would log errors forever.
  #  --disable-admission-plugins=ServiceAccount: there is no controller-manager
  #    to create default ServiceAccounts, so Pod creation would be rejected.
  #  --service-cluster-ip-range is only a config value; nothing routes there.
  setsid "${APISERVER_BIN}" \
    --etcd-servers="${etcd_url}" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="${api_port}" \
    --cert-dir="${pki}" \
    --tls-cert-file="${pki}/apiserver.crt" \
    --tls-private-key-file="${pki}/apiserver.key" \
    --client-ca-file="${pki}/ca.crt" \
    --token-auth-file="${pki}/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${pki}/sa.pub" \
    --service-account-signing-key-file="${pki}/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --authorization-mode="${AUTHZ_MODE}" \
    --disable-admission-plugins=ServiceAccount \
    --allow-privileged=true \
    --anonymous-auth=false \
    --profiling=false \
    --enable-priority-and-fairness=false \
    ${extra[@]+"${extra[@]}"} \
    </dev/null >"${dir}/kube-apiserver.log" 2>&1 &
  apiserver_pid=$!
  write_env

  if ! wait_http "${apiserver_pid}" "${READY_TIMEOUT}" "kube-apiserver /readyz" \
       --cacert "${pki}/ca.crt" -H "Authorization: Bearer $(cat "${pki}/admin.token")" \
       "${api_url}/readyz"; then
    log "kube-apiserver failed to become ready; last lines of ${dir}/kube-apiserver.log:"
    tail -n 30 "${dir}/kube-apiserver.log" >&2 || true
    cmd_stop "${dir}" || true
    exit 1
  fi
  write_kubeconfig "${dir}" "${api_url}"
  local ms=$(( ( $(date +%s%N) - t0ns ) / 1000000 ))
  : "${t0}"
  log "ready in ${ms} ms: ${api_url} (authz ${AUTHZ_MODE}); source ${dir}/env"
}

stop_pid() {
  local pid="$1" dir="$2" name="$3" i
  if ! pid_matches "${pid}" "${dir}"; then
    return 0
  fi
  kill -TERM "${pid}" 2>/dev/null || true
  for i in $(seq 1 100); do   # up to 20 s
    pid_alive "${pid}" || { log "stopped ${name} (pid ${pid})"; return 0; }
    sleep 0.2
    : "${i}"
  done
  log "${name} (pid ${pid}) did not exit on SIGTERM; sending SIGKILL"
  kill -KILL "${pid}" 2>/dev/null || true
  for i in $(seq 1 50); do
    pid_alive "${pid}" || return 0
    sleep 0.2
  done
  die "${name} (pid ${pid}) is still running"
}

cmd_stop() {
  local dir="${1:-}"
  [[ -n "${dir}" ]] || die "usage: $0 stop DIR"
  [[ -d "${dir}" ]] || die "no such directory: ${dir}"
  dir="$(cd "${dir}" && pwd -P)"
  [[ -f "${dir}/env" ]] || { log "nothing to stop in ${dir}"; return 0; }
  local etcd_pid api_pid
  etcd_pid="$(sed -n 's/^export ETCD_PID=//p' "${dir}/env")"
  api_pid="$(sed -n 's/^export APISERVER_PID=//p' "${dir}/env")"
  stop_pid "${api_pid}" "${dir}" kube-apiserver
  stop_pid "${etcd_pid}" "${dir}" etcd
}

cmd_status() {
  local dir="${1:-}"
  [[ -n "${dir}" && -f "${dir}/env" ]] || die "usage: $0 status DIR (no ${dir:-DIR}/env)"
  dir="$(cd "${dir}" && pwd -P)"
  local etcd_pid api_pid rc=0
  etcd_pid="$(sed -n 's/^export ETCD_PID=//p' "${dir}/env")"
  api_pid="$(sed -n 's/^export APISERVER_PID=//p' "${dir}/env")"
  if pid_matches "${etcd_pid}" "${dir}"; then echo "etcd: running (${etcd_pid})"; else echo "etcd: stopped"; rc=1; fi
  if pid_matches "${api_pid}" "${dir}"; then echo "kube-apiserver: running (${api_pid})"; else echo "kube-apiserver: stopped"; rc=1; fi
  return "${rc}"
}

cmd_paths() {
  echo "kube-apiserver: ${APISERVER_BIN}"
  if [[ -n "${CONTROL_PLANE_ETCD:-}" ]]; then echo "etcd: ${CONTROL_PLANE_ETCD}"
  elif etcd_usable /usr/bin/etcd; then echo "etcd: /usr/bin/etcd"
  else echo "etcd: ${ETCD_BUILD_DIR}/bin/etcd"; fi
}

main() {
  local cmd="${1:-}"
  shift || true
  case "${cmd}" in
    build)  cmd_build ;;
    start)  cmd_start "$@" ;;
    stop)   cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    paths)  cmd_paths ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
  esac
}

main "$@"
