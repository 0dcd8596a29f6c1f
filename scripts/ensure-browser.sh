#!/usr/bin/env bash
# Make a headless Chromium and its WebDriver available for the dashboard's browser tests
# (tests/e2e/test_dashboard.py, driven by selenium).
#
#   - chromium and chromedriver already on PATH -> print one line, exit 0
#   - Debian/Ubuntu and root                    -> apt-get install chromium chromium-driver
#                                                  (Debian's packages: no browser download)
#   - otherwise                                 -> explain what is missing, exit 1
#
# Idempotent; concurrent runs are serialised with flock.
set -euo pipefail

say() { printf 'ensure-browser: %s\n' "$*"; }
err() { printf 'ensure-browser: %s\n' "$*" >&2; }

present() {
    { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
        && command -v chromedriver >/dev/null 2>&1
}

report_ok() {
    local browser
    browser="$(command -v chromium || command -v chromium-browser)"
    say "$("$browser" --version 2>/dev/null | head -n 1 || echo "$browser"), $(chromedriver --version 2>/dev/null | head -n 1)"
}

if present; then
    report_ok
    exit 0
fi

is_debian_like() {
    [[ -r /etc/os-release ]] || return 1
    local ids
    # shellcheck source=/dev/null
    ids="$(. /etc/os-release; echo " ${ID:-} ${ID_LIKE:-} ")"
    [[ $ids == *" debian "* || $ids == *" ubuntu "* ]]
}

if [[ $(id -u) -ne 0 ]] || ! is_debian_like || ! command -v apt-get >/dev/null 2>&1; then
    err "chromium and chromedriver are needed for the dashboard's browser tests."
    err "  Debian/Ubuntu, as root: apt-get update && apt-get install -y chromium chromium-driver"
    err "  (or re-run this script as root; elsewhere install Chromium and a matching chromedriver)"
    exit 1
fi

LOCK_FILE=/tmp/faas-ensure-browser.lock
exec 9>"$LOCK_FILE"
flock 9
if present; then  # another run installed them while we waited
    report_ok
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium-driver >/dev/null 2>&1; then
    say "apt-get update"
    apt-get update -qq
fi
say "installing chromium chromium-driver (apt-get install)"
if ! apt-get install -y -qq chromium chromium-driver >/dev/null; then
    say "install failed with the current lists; apt-get update and retry"
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi
present || { err "installed, but chromium or chromedriver is still not on PATH"; exit 1; }
report_ok
