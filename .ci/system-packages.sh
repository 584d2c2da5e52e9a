#!/usr/bin/env bash
# The Debian packages the test suite needs beyond Python (the list: .ci/system-packages), checked with
# dpkg-query and, when some are missing, installed with apt-get: as root, or through passwordless sudo
# (`sudo -n`). The one implementation behind `make system` (which `make test` and `make test-all` run
# first), .ci/run, and the message of the Qt tests when Qt cannot start (tests/support/qt.py).
#
#   bash .ci/system-packages.sh             install what is missing, or stop with one line saying how
#   bash .ci/system-packages.sh --check     only check: one line (stderr, exit 1) if something is missing
#   bash .ci/system-packages.sh --missing   the names of the missing packages on one line (stdout), exit 0;
#                                           exit 2 when this machine cannot tell (no dpkg-query)
#
# Exit status 0: everything is installed (now); 1: something is missing and was not installed: one line
# on stderr, starting with "biounet:", names it and the command to run. BIOUNET_SYSTEM_CHECK=skip checks
# nothing (a machine that is not Debian and provides Xvfb and Qt's libraries otherwise).
# BIOUNET_SYSTEM_PACKAGES names another list (the tests of this script use it).
set -uo pipefail
set -f  # package names are words, never patterns

mode=${1:-install}
case $mode in
    install | --check | --missing) ;;
    *)
        echo "biounet: usage: bash .ci/system-packages.sh [--check | --missing]" >&2
        exit 2
        ;;
esac
[[ ${BIOUNET_SYSTEM_CHECK:-} == skip && $mode != --missing ]] && exit 0

# bash builtins only up to the dpkg-query check: it must answer on a machine that has nothing else
here=${BASH_SOURCE[0]%/*}
[[ $here == "${BASH_SOURCE[0]}" ]] && here=.
list=${BIOUNET_SYSTEM_PACKAGES:-$here/system-packages}
if [[ ! -r $list ]]; then
    echo "biounet: cannot read the list of Debian packages the tests need, $list" >&2
    exit 2
fi
packages=()
while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    for word in $line; do packages+=("$word"); done
done <"$list"

if ! command -v dpkg-query >/dev/null 2>&1 || { [[ $mode == install ]] && ! command -v apt-get >/dev/null 2>&1; }; then
    [[ $mode == --missing ]] && exit 2
    echo "biounet: the tests need Xvfb, xauth and the OpenGL/EGL, xcb, fontconfig and D-Bus libraries of" \
        "Qt 6, and this machine has no dpkg-query/apt-get to check or install them (not Debian or Ubuntu):" \
        "install their equivalents of the Debian packages ${packages[*]}, then run: make test" \
        "SYSTEM_CHECK=skip" >&2
    exit 1
fi

missing_packages() {
    # installed: "ii" for at least one architecture; one never installed (no line, or "un") or removed
    # with its configuration left ("rc") is missing
    local -A installed=()
    local name abbrev p
    local out=()
    while read -r name abbrev; do
        [[ $abbrev == ii ]] && installed[$name]=1
    done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null)
    for p in "${packages[@]}"; do
        [[ -n ${installed[$p]:-} ]] || out+=("$p")
    done
    echo "${out[*]}"
}

missing=$(missing_packages)
if [[ $mode == --missing ]]; then
    echo "$missing"
    exit 0
fi
[[ -z $missing ]] && exit 0

uid=$(id -u)
if [[ $uid == 0 ]]; then
    as_root=()
    sudo_hint=""
else
    as_root=(sudo -n)
    sudo_hint="sudo "
fi
if [[ $mode == --check ]] || { [[ $uid != 0 ]] && ! sudo -n true >/dev/null 2>&1; }; then
    echo "biounet: the tests need Debian packages that are missing: $missing; run: ${sudo_hint}apt-get" \
        "install -y $missing" >&2
    exit 1
fi

echo "biounet: installing the Debian packages the tests need: ${sudo_hint}apt-get install -y $missing" >&2
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
# shellcheck disable=SC2086 # one word per package
"${apt[@]}" install -y -q $missing || { "${apt[@]}" update -q && "${apt[@]}" install -y -q $missing; }
status=$?
still=$(missing_packages)
if [[ $status != 0 || -n $still ]]; then
    echo "biounet: apt-get could not install the Debian packages the tests need (exit status $status; still" \
        "missing: ${still:-none}); run: ${sudo_hint}apt-get update && ${sudo_hint}apt-get install -y $missing" >&2
    exit 1
fi
