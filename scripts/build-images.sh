#!/usr/bin/env bash
# Build the local runtime images faas-python:latest and faas-node:latest.
#
# Usage: scripts/build-images.sh [--force] [--rebuild-base] [--only python|node]...
#
#   --force          rebuild the runtime images even if they exist (docker build --no-cache)
#   --rebuild-base   rebuild the local debootstrap base image(s) too (implies --force)
#   --only R         build only runtime R (python or node); may be repeated
#
# Base image, per runtime, first match wins:
#   1. the registry base already present locally  (python:3.11-slim-bookworm / node:20-bookworm-slim)
#   2. a local base built earlier by this script   (faas-base-python:bookworm / faas-base-node:bookworm)
#   3. `docker pull` of the registry base, under `timeout $FAAS_PULL_TIMEOUT` (default 20 s)
#   4. a new local base: debootstrap --variant=minbase bookworm with the runtime's
#      packages (--include: python3,python3-pip,ca-certificates resp.
#      nodejs,ca-certificates + npm 10.x from the npm registry tarball,
#      falling back to Debian's npm via apt-get in the chroot), trimmed,
#      then `tar | docker import`. Needs root and the Debian mirror (from the
#      host's apt sources, else http://deb.debian.org/debian); no network is
#      needed inside `docker build`.
#
# An existing runtime image is skipped unless --force, or unless its build
# context (runtimes/<R>/) changed since it was built (label faas.context-hash).
#
# Environment knobs:
#   FAAS_PULL_TIMEOUT     seconds for the registry pull attempt (default 20; 0 = never pull)
#   FAAS_BASE_SOURCE      auto | registry | debootstrap   (default auto)
#   FAAS_DEBIAN_MIRROR    Debian mirror for debootstrap (default: from apt sources)
#   FAAS_DEBOOTSTRAP_CACHE  .deb cache shared by the debootstraps
#                           (default /var/cache/faas-debootstrap; "" disables it)
#   FAAS_BUILD_TMP        where the temporary rootfs goes (default /var/tmp)
#   FAAS_NPM_VERSION / FAAS_NPM_SHA512   npm for the node base (default 10.9.9, pinned sha512)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

SUITE=bookworm
DEFAULT_MIRROR=http://deb.debian.org/debian
PULL_TIMEOUT="${FAAS_PULL_TIMEOUT:-20}"
BASE_SOURCE="${FAAS_BASE_SOURCE:-auto}"
DEB_CACHE="${FAAS_DEBOOTSTRAP_CACHE-/var/cache/faas-debootstrap}"
BUILD_TMP="${FAAS_BUILD_TMP:-/var/tmp}"

FORCE=0
REBUILD_BASE=0
ONLY=()

while (($#)); do
    case "$1" in
        --force) FORCE=1 ;;
        --rebuild-base) REBUILD_BASE=1; FORCE=1 ;;
        --only) shift; ONLY+=("${1:?--only needs python or node}") ;;
        --only=*) ONLY+=("${1#--only=}") ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "build-images: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
((${#ONLY[@]})) || ONLY=(python node)
for r in "${ONLY[@]}"; do
    [[ $r == python || $r == node ]] || { echo "build-images: unknown runtime '$r'" >&2; exit 2; }
done
case "$BASE_SOURCE" in auto|registry|debootstrap) ;; *)
    echo "build-images: FAAS_BASE_SOURCE must be auto, registry or debootstrap" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- helpers ----

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# timed LABEL CMD... : run CMD, print how long it took, keep its exit code.
timed() {
    local label=$1; shift
    local t0 rc=0
    t0=$(now)
    log "-> $label"
    "$@" || rc=$?
    if ((rc == 0)); then
        log "<- $label: done in $(elapsed "$t0")s"
    else
        log "<- $label: FAILED (exit $rc) after $(elapsed "$t0")s"
    fi
    return $rc
}

# to_log FILE CMD... : run CMD with stdout+stderr to FILE.
to_log() { local f=$1; shift; "$@" >"$f" 2>&1; }
quiet() { "$@" >/dev/null; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

registry_base() {
    case "$1" in
        python) echo python:3.11-slim-bookworm ;;
        node) echo node:20-bookworm-slim ;;
    esac
}
local_base() { echo "faas-base-$1:$SUITE"; }

# Packages debootstrap installs itself (--include): its resolver follows plain
# Depends only, which is enough for these.
debootstrap_packages() {
    case "$1" in
        python) echo python3,python3-pip,ca-certificates ;;
        node) echo nodejs,ca-certificates ;;
    esac
}

# npm for the node base comes from the npm registry as one self-contained
# tarball (~3 MB, all deps bundled). Debian's own npm package would drag in
# ~870 node-* packages (webpack, babel, eslint, ...: +150 MB) because it
# depends on virtual packages, which debootstrap's resolver cannot even
# satisfy. npm 10.x is the newest line supporting Debian's nodejs 18.
# If the registry is unreachable, Debian's npm is installed with apt instead.
NPM_VERSION="${FAAS_NPM_VERSION:-10.9.9}"
NPM_SHA512_10_9_9=d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862
NPM_SHA512="${FAAS_NPM_SHA512:-}"
[[ -n $NPM_SHA512 || $NPM_VERSION != 10.9.9 ]] || NPM_SHA512=$NPM_SHA512_10_9_9

# Hash of the build context, so that a changed Dockerfile/bootstrap is rebuilt.
context_hash() {
    local dir=$1
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
        | sha256sum | cut -c1-16
}

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null 2>&1 \
        || compgen -G '/var/lib/apt/lists/*_Packages.*' >/dev/null 2>&1
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)) && ! apt_lists_present; then
        apt-get update -qq; APT_UPDATED=1
    fi
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        ((APT_UPDATED == 0)) || return 1
        apt-get update -qq; APT_UPDATED=1
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

ensure_debootstrap() {
    if ! command -v debootstrap >/dev/null 2>&1; then
        timed "apt-get install debootstrap" apt_install debootstrap wget ca-certificates \
            || die "could not install debootstrap"
    fi
    if [[ ! -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
        timed "apt-get install debian-archive-keyring" apt_install debian-archive-keyring \
            || die "could not install debian-archive-keyring"
    fi
}

# The Debian mirror the host's apt already uses for $SUITE (main), else the default.
detect_mirror() {
    if [[ -n ${FAAS_DEBIAN_MIRROR:-} ]]; then echo "${FAAS_DEBIAN_MIRROR%/}"; return; fi
    local m="" f
    # deb822 *.sources files
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        m=$(awk -v suite="$SUITE" '
            function flush() {
                if (found) return
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") \
                    && (" " comps " ") ~ / main / && enabled != "no" && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = suites = comps = uris = ""; enabled = ""
            }
            /^[[:space:]]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { $1 = ""; types = $0 }
            tolower($1) == "uris:" { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "components:" { $1 = ""; comps = $0 }
            tolower($1) == "enabled:" { enabled = tolower($2) }
            END { flush() }' "$f" || true)
        [[ -n $m ]] && break
    done
    # one-line sources.list format
    if [[ -z $m ]]; then
        m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$SUITE" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                    uri = $i; s = $(i + 1)
                    if (s != suite) next
                    for (j = i + 2; j <= NF; j++) if ($j == "main") { print uri; exit }
                }' || true)
    fi
    [[ -n $m ]] || m=$DEFAULT_MIRROR
    echo "${m%/}"
}

# Unmount anything left mounted below $1 (a failed debootstrap may leave
# /proc, /sys, ...), then delete it without crossing filesystems.
cleanup_rootfs() {
    local d=$1
    [[ -n $d && -d $d ]] || return 0
    local mnt
    awk -v d="$d" 'index($2, d "/") == 1 || $2 == d { print $2 }' /proc/mounts \
        | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf --one-file-system "$d"
}

ROOTFS_DIRS=()
cleanup_all() {
    local d
    for d in "${ROOTFS_DIRS[@]+"${ROOTFS_DIRS[@]}"}"; do cleanup_rootfs "$d"; done
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

# Shrink a debootstrapped rootfs before import.
trim_rootfs() {
    local r=$1
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/archives/partial/* \
        "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
        "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
        "$r"/usr/share/lintian "$r"/usr/share/linda \
        "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
        "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache "$r"/root/.npm
    # keep only the locale.alias file of /usr/share/locale
    find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    # Keep later `apt-get install`s in the image small too (as the official images do).
    mkdir -p "$r"/etc/dpkg/dpkg.cfg.d "$r"/etc/apt/apt.conf.d
    cat >"$r"/etc/dpkg/dpkg.cfg.d/01-faas-nodoc <<'EOT'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOT
    cat >"$r"/etc/apt/apt.conf.d/01-faas-clean <<'EOT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
Acquire::Languages "none";
EOT
    # Host-specific files: docker provides them at run time.
    : >"$r"/etc/resolv.conf
    : >"$r"/etc/machine-id 2>/dev/null || true
    rm -f "$r"/etc/hostname
    # Devices, /proc and /sys are provided by the container runtime.
    find "$r"/dev "$r"/proc "$r"/sys -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {} + 2>/dev/null || true
}

# apt-get install $2... inside the rootfs $1 via chroot, using the host's
# network/DNS (and its CA bundle, should the mirror be https behind a proxy).
apt_in_rootfs() {
    local r=$1; shift
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 0755 "$r/usr/sbin/policy-rc.d"
    local ca_opt=()
    if [[ -r /etc/ssl/certs/ca-certificates.crt ]]; then
        cp -L /etc/ssl/certs/ca-certificates.crt "$r/tmp/faas-host-ca.crt"
        ca_opt=(-o Acquire::https::CAInfo=/tmp/faas-host-ca.crt)
    fi
    local rc=0
    {
        chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C LANG=C \
            apt-get -qq "${ca_opt[@]}" update \
        && chroot "$r" env DEBIAN_FRONTEND=noninteractive LC_ALL=C LANG=C \
            apt-get -qq -y --no-install-recommends "${ca_opt[@]}" install "$@"
    } || rc=$?
    rm -f "$r/usr/sbin/policy-rc.d" "$r/tmp/faas-host-ca.crt"
    return $rc
}

# fetch URL FILE (curl or wget; host CA store, so a TLS-intercepting proxy works)
fetch() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 15 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 30 -t 2 -O "$2" "$1"
    else
        return 1
    fi
}

# Put npm $NPM_VERSION (registry tarball, checksum-verified) into rootfs $1.
install_npm_tarball() {
    local r=$1 dir tgz url
    dir=${DEB_CACHE:-$BUILD_TMP}
    mkdir -p "$dir"
    tgz="$dir/npm-$NPM_VERSION.tgz"
    url="https://registry.npmjs.org/npm/-/npm-$NPM_VERSION.tgz"
    if [[ ! -s $tgz ]]; then
        fetch "$url" "$tgz.part" || { rm -f "$tgz.part"; log "could not download $url"; return 1; }
        mv "$tgz.part" "$tgz"
    fi
    if [[ -n $NPM_SHA512 ]]; then
        if [[ $(sha512sum "$tgz" | cut -d' ' -f1) != "$NPM_SHA512" ]]; then
            log "checksum mismatch for $tgz"; rm -f "$tgz"; return 1
        fi
    else
        log "WARNING: no FAAS_NPM_SHA512 given for npm $NPM_VERSION; not verified"
    fi
    local dest="$r/usr/local/lib/node_modules/npm"
    rm -rf "$dest"; mkdir -p "$dest" "$r/usr/local/bin"
    tar -xzf "$tgz" -C "$dest" --strip-components=1 --no-same-owner --no-same-permissions
    chmod -R u=rwX,go=rX "$dest"
    chmod 0755 "$dest/bin/npm-cli.js" "$dest/bin/npx-cli.js"
    ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$r/usr/local/bin/npm"
    ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$r/usr/local/bin/npx"
    # sanity check with the rootfs' own node
    local v
    v=$(chroot "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root npm --version) \
        || { log "npm does not run in the rootfs"; rm -rf "$dest" "$r/usr/local/bin/npm" "$r/usr/local/bin/npx"; return 1; }
    log "   npm $v installed in the rootfs"
}

build_local_base() {
    local rt=$1 image pkgs mirror rootfs
    image=$(local_base "$rt")
    pkgs=$(debootstrap_packages "$rt")
    [[ $(id -u) -eq 0 ]] || die "building the debootstrap base $image needs root (or make $(registry_base "$rt") available)"
    ensure_debootstrap
    mirror=$(detect_mirror)

    mkdir -p "$BUILD_TMP"
    rootfs=$(mktemp -d "$BUILD_TMP/faas-rootfs-$rt.XXXXXX")
    ROOTFS_DIRS+=("$rootfs")

    local cache_args=()
    if [[ -n $DEB_CACHE ]]; then
        mkdir -p "$DEB_CACHE"
        cache_args=(--cache-dir="$DEB_CACHE")
    fi
    local ds_args=(--variant=minbase --include="$pkgs"
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        "${cache_args[@]+"${cache_args[@]}"}")

    local ds_log="$BUILD_TMP/faas-debootstrap-$rt.log"
    if ! timed "debootstrap $SUITE ($pkgs) from $mirror" \
        to_log "$ds_log" debootstrap "${ds_args[@]}" "$SUITE" "$rootfs" "$mirror"; then
        tail -n 25 "$ds_log" >&2 || true
        [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 25 "$rootfs/debootstrap/debootstrap.log" >&2
        if [[ $mirror != "$DEFAULT_MIRROR" ]]; then
            log "retrying with $DEFAULT_MIRROR"
            cleanup_rootfs "$rootfs"; mkdir -p "$rootfs"
            mirror=$DEFAULT_MIRROR
            timed "debootstrap $SUITE ($pkgs) from $mirror" \
                to_log "$ds_log" debootstrap "${ds_args[@]}" "$SUITE" "$rootfs" "$mirror" \
                || { tail -n 25 "$ds_log" >&2; die "debootstrap failed (log: $ds_log)"; }
        else
            die "debootstrap failed (log: $ds_log)"
        fi
    fi
    rm -f "$ds_log"

    if [[ $rt == node ]]; then
        if ! timed "install npm $NPM_VERSION from the npm registry" install_npm_tarball "$rootfs"; then
            log "falling back to Debian's npm package (much bigger)"
            local apt_log="$BUILD_TMP/faas-chroot-apt-$rt.log"
            timed "apt-get install npm (in the rootfs)" to_log "$apt_log" apt_in_rootfs "$rootfs" npm \
                || { tail -n 30 "$apt_log" >&2; die "apt-get install npm in the rootfs failed (log: $apt_log)"; }
            rm -f "$apt_log"
            pkgs="$pkgs,npm"
        else
            pkgs="$pkgs,npm@$NPM_VERSION"
        fi
    fi

    timed "trim rootfs ($(du -sh --one-file-system "$rootfs" | cut -f1) before)" trim_rootfs "$rootfs"
    log "   rootfs now $(du -sh --one-file-system "$rootfs" | cut -f1)"

    import_rootfs() {
        tar -C "$rootfs" --numeric-owner --xattrs --one-file-system -c . \
            | docker import \
                --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
                --change 'ENV LANG=C.UTF-8' \
                --change "LABEL faas.base=debootstrap-$SUITE faas.base.packages=$pkgs" \
                --change 'CMD ["bash"]' \
                --message "debootstrap --variant=minbase --include=$pkgs $SUITE $mirror" \
                - "$image" >/dev/null
    }
    timed "docker import -> $image" import_rootfs || die "docker import failed"
    timed "remove rootfs" cleanup_rootfs "$rootfs"
}

# Sets BASE_IMAGE to the base image to use for runtime $1.
# (No command substitution: a failure must run the EXIT trap of this shell.)
BASE_IMAGE=""
select_base() {
    local rt=$1 reg loc
    reg=$(registry_base "$rt")
    loc=$(local_base "$rt")
    BASE_IMAGE=""

    if ((REBUILD_BASE)); then
        build_local_base "$rt"; BASE_IMAGE=$loc; return
    fi
    if [[ $BASE_SOURCE != debootstrap ]] && image_exists "$reg"; then
        log "base: registry image $reg is present locally"; BASE_IMAGE=$reg; return
    fi
    if [[ $BASE_SOURCE != registry ]] && image_exists "$loc"; then
        log "base: local image $loc (built earlier)"; BASE_IMAGE=$loc; return
    fi
    if [[ $BASE_SOURCE != debootstrap ]] && [[ $PULL_TIMEOUT != 0 ]]; then
        if timed "docker pull $reg (timeout ${PULL_TIMEOUT}s)" \
            timeout "$PULL_TIMEOUT" docker pull -q "$reg" 2>/dev/null; then
            BASE_IMAGE=$reg; return
        fi
        log "registry not reachable; falling back to a debootstrap base"
    fi
    [[ $BASE_SOURCE != registry ]] || die "registry base $reg unavailable and FAAS_BASE_SOURCE=registry"
    build_local_base "$rt"
    BASE_IMAGE=$loc
}

build_runtime() {
    local rt=$1 image ctx hash base t0
    image="faas-$rt:latest"
    ctx="$REPO_ROOT/runtimes/$rt"
    [[ -f $ctx/Dockerfile ]] || die "missing $ctx/Dockerfile"
    hash=$(context_hash "$ctx")
    t0=$(now)

    if ((FORCE == 0)) && image_exists "$image"; then
        local have
        have=$(image_label "$image" faas.context-hash)
        if [[ $have == "$hash" ]]; then
            log "$image exists (context $hash), skipping (use --force to rebuild)"
            return 0
        fi
        log "$image exists but runtimes/$rt changed (${have:-none} -> $hash); rebuilding"
    fi

    local old_id
    old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    select_base "$rt"
    base=$BASE_IMAGE
    local build_args=(--build-arg "BASE=$base" --label "faas.context-hash=$hash" -t "$image")
    ((FORCE)) && build_args+=(--no-cache)
    timed "docker build $image (FROM $base)" quiet docker build -q "${build_args[@]}" "$ctx" \
        || die "docker build of $image failed (re-run: docker build --build-arg BASE=$base -t $image $ctx)"
    # Drop the image this build replaced, if nothing else uses it (no error if so).
    if [[ -n $old_id && $old_id != "$(docker image inspect --format '{{.Id}}' "$image")" ]]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
    log "$image ready in $(elapsed "$t0")s ($(docker image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

# ------------------------------------------------------------------- main ----

T_START=$(now)
"$SCRIPT_DIR/ensure-docker.sh"

# Without the buildx plugin, newer docker CLIs can not use BuildKit: use the
# classic builder (works with every engine version, incl. Debian's 20.10).
if [[ -z ${DOCKER_BUILDKIT:-} ]] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi

# One build at a time on this machine.
if command -v flock >/dev/null 2>&1; then
    LOCK_FILE="${TMPDIR:-/tmp}/faas-build-images.lock"
    exec 8>"$LOCK_FILE"
    flock -w 1800 8 || die "another build-images.sh is running (lock $LOCK_FILE)"
fi

for rt in "${ONLY[@]}"; do
    build_runtime "$rt"
done
log "all done in $(elapsed "$T_START")s"
docker images --format '  {{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^  faas-' || true
