#!/usr/bin/env bash
# Make a Docker engine reachable for the current user.
#
#   - `docker info` already works          -> print one line, exit 0
#   - Debian/Ubuntu and root               -> install docker.io if dockerd is
#                                             missing, start dockerd detached
#                                             (log: /var/log/faas-dockerd.log),
#                                             wait up to 60 s for it to answer
#   - otherwise                            -> explain what is missing, exit 1
#
# Idempotent: never starts a second dockerd (checks the pid file, a running
# dockerd process and the socket, and serialises concurrent runs with flock).
#
# Environment knobs:
#   FAAS_DOCKERD_LOG        log file for a dockerd we start (default /var/log/faas-dockerd.log)
#   FAAS_DOCKER_WAIT        seconds to wait for the engine (default 60)
set -euo pipefail

LOG_FILE="${FAAS_DOCKERD_LOG:-/var/log/faas-dockerd.log}"
WAIT_SECS="${FAAS_DOCKER_WAIT:-60}"
PID_FILE=/var/run/docker.pid
SOCKET=/var/run/docker.sock
LOCK_FILE=""
for _d in /run/lock /var/lock /tmp; do
    if [[ -d $_d && -w $_d ]]; then LOCK_FILE="$_d/faas-ensure-docker.lock"; break; fi
done

say() { printf 'ensure-docker: %s\n' "$*"; }
err() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_ok() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

report_ok() {
    local v
    v="$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
    say "docker engine reachable (server ${v}, host ${DOCKER_HOST:-unix://$SOCKET})"
}

# Wait until `docker info` answers; $1 = seconds. Returns 1 on timeout.
wait_engine() {
    local limit=$1 i=0
    while (( i < limit * 2 )); do
        if engine_ok; then return 0; fi
        # give up early if the dockerd we are waiting on died
        if (( i > 4 )) && ! dockerd_running; then return 1; fi
        sleep 0.5
        i=$((i + 1))
    done
    engine_ok
}

# Is a dockerd process alive (pid file, or any process whose name is dockerd)?
dockerd_running() {
    local pid
    if [[ -r $PID_FILE ]]; then
        pid="$(cat "$PID_FILE" 2>/dev/null || true)"
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]]; then
            return 0
        fi
    fi
    local p
    for p in /proc/[0-9]*; do
        [[ "$(cat "$p/comm" 2>/dev/null || true)" == dockerd ]] && return 0
    done
    return 1
}

is_debian_like() {
    [[ -r /etc/os-release ]] || return 1
    local id id_like
    # shellcheck source=/dev/null
    id="$(. /etc/os-release; echo "${ID:-}")"
    # shellcheck source=/dev/null
    id_like="$(. /etc/os-release; echo "${ID_LIKE:-}")"
    [[ $id == debian || $id == ubuntu || " $id_like " == *" debian "* || " $id_like " == *" ubuntu "* ]]
}

explain_and_fail() {
    err "no Docker engine is reachable: $*"
    if command -v docker >/dev/null 2>&1; then
        err "  docker CLI: $(command -v docker); 'docker info' said:"
        docker info 2>&1 | sed 's/^/    /' | tail -n 5 >&2 || true
    else
        err "  the docker CLI is not installed."
    fi
    err "How to fix:"
    err "  - Debian/Ubuntu, as root: apt-get update && apt-get install -y docker.io"
    err "    then start it: systemctl start docker   (or: nohup dockerd >/var/log/dockerd.log 2>&1 &)"
    err "    or simply re-run this script as root, it does both."
    err "  - other systems: install Docker Engine (https://docs.docker.com/engine/install/)"
    err "    and start the daemon."
    err "  - as a non-root user: make sure you may use the socket ($SOCKET),"
    err "    e.g. 'usermod -aG docker \$USER' and log in again, or set DOCKER_HOST."
    exit 1
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null 2>&1 \
        || compgen -G '/var/lib/apt/lists/*_Packages.*' >/dev/null 2>&1
}

install_docker_io() {
    export DEBIAN_FRONTEND=noninteractive
    local updated=0
    # Only refresh the package lists if they are missing or do not know docker.io.
    if ! apt_lists_present || ! apt-cache show docker.io >/dev/null 2>&1; then
        say "apt-get update"
        apt-get update -qq
        updated=1
    fi
    say "installing docker.io (apt-get install)"
    if ! apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null; then
        if (( updated == 0 )); then
            say "install failed with the current lists; apt-get update and retry"
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
        else
            return 1
        fi
    fi
}

start_dockerd() {
    mkdir -p "$(dirname "$LOG_FILE")"
    say "starting dockerd in the background (log: $LOG_FILE)"
    # setsid: new session, no controlling terminal; nohup: ignore SIGHUP;
    # stdin from /dev/null so it never holds the caller's pipes open.
    nohup setsid dockerd >>"$LOG_FILE" 2>&1 </dev/null &
    disown 2>/dev/null || true
}

main() {
    if engine_ok; then
        report_ok
        exit 0
    fi

    if [[ -n ${DOCKER_HOST:-} && ${DOCKER_HOST} != unix://* ]]; then
        explain_and_fail "DOCKER_HOST=${DOCKER_HOST} does not answer (not a local engine this script can start)"
    fi

    if [[ $(id -u) -ne 0 ]]; then
        if dockerd_running || [[ -S $SOCKET ]]; then
            local out
            out="$(docker info 2>&1 || true)"
            if [[ ${out,,} == *"permission denied"* ]]; then
                explain_and_fail "permission denied on the docker socket for user $(id -un)"
            fi
            if wait_engine "$WAIT_SECS"; then report_ok; exit 0; fi
            explain_and_fail "a dockerd seems to run but does not answer this user (permission on $SOCKET?)"
        fi
        explain_and_fail "dockerd is not running and this script is not root (cannot install/start it)"
    fi

    # Serialise concurrent invocations (e.g. parallel CI steps).
    if [[ -n $LOCK_FILE ]] && command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w $((WAIT_SECS + 120)) 9 || explain_and_fail "timed out waiting for another ensure-docker run"
        if engine_ok; then report_ok; exit 0; fi
    fi

    # A dockerd may already be starting (ours from a previous run, systemd's, ...).
    if dockerd_running; then
        say "a dockerd is already running; waiting up to ${WAIT_SECS}s for it to answer"
        if wait_engine "$WAIT_SECS"; then report_ok; exit 0; fi
        err "the running dockerd did not answer within ${WAIT_SECS}s; last log lines:"
        tail -n 20 "$LOG_FILE" 2>/dev/null >&2 || true
        explain_and_fail "dockerd is running but 'docker info' fails"
    fi

    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        if ! is_debian_like; then
            explain_and_fail "dockerd/docker are not installed and this is not Debian/Ubuntu (no automatic install)"
        fi
        if ! command -v apt-get >/dev/null 2>&1; then
            explain_and_fail "dockerd/docker are not installed and apt-get is missing"
        fi
        local t0=$SECONDS
        install_docker_io || explain_and_fail "apt-get install docker.io failed"
        say "docker.io installed in $((SECONDS - t0))s"
        # Package scripts may have started it (systemd hosts); give it a moment.
        if dockerd_running || [[ -S $SOCKET ]]; then
            if wait_engine 15; then report_ok; exit 0; fi
        fi
        if dockerd_running; then
            say "dockerd was started by the package; waiting up to ${WAIT_SECS}s"
            if wait_engine "$WAIT_SECS"; then report_ok; exit 0; fi
            explain_and_fail "dockerd started by the package does not answer"
        fi
    fi

    # A stale socket/pid file from a dead daemon would make dockerd refuse to start.
    if [[ -e $PID_FILE ]] && ! dockerd_running; then
        rm -f "$PID_FILE"
    fi

    local t0=$SECONDS
    start_dockerd
    if wait_engine "$WAIT_SECS"; then
        say "dockerd answered after $((SECONDS - t0))s"
        report_ok
        exit 0
    fi
    if dockerd_running; then
        err "dockerd did not answer within ${WAIT_SECS}s; last log lines of $LOG_FILE:"
    else
        err "dockerd exited during start-up; last log lines of $LOG_FILE:"
    fi
    tail -n 30 "$LOG_FILE" >&2 || true
    explain_and_fail "dockerd failed to start"
}

main "$@"
