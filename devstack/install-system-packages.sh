#!/bin/sh
# Installs the Debian packages the project needs where they are missing:
# bubblewrap (the sandbox), a Java runtime (Google's emulators), Node.js and npm (the templates'
# scripts), and, for `make test`, Chromium and its driver (the dashboard's browser test).
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
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: missing Debian packages:$missing (install them with apt-get as root)" >&2
    exit 0
fi
echo "installing:$missing"
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
