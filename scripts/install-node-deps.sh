#!/usr/bin/env bash
# Install what the real-node tier and `tjctl images build` need, once, from Debian:
# docker.io containerd runc containernetworking-plugins debootstrap iptables, and sshfs +
# openssh-sftp-server (a real network filesystem over pipes for the SQLite-on-NFS test).
# Idempotent: does nothing when every package is installed. Needs root (or sudo) and apt.
#
# It never starts a service: dockerd and containerd are started only by the project, each
# inside a network namespace with no route off the machine, and stopped after use. While
# apt installs, /usr/sbin/policy-rc.d answers 101 ("action forbidden"), so the packages'
# maintainer scripts start nothing under sysvinit or systemd (invoke-rc.d / deb-systemd-
# invoke obey it); a docker or containerd running before the install is left alone.
set -euo pipefail

PACKAGES=(docker.io containerd runc containernetworking-plugins debootstrap iptables sshfs openssh-sftp-server)
POLICY=/usr/sbin/policy-rc.d

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-node-deps: ${missing[*]} missing and this user is not root;" \
            "install them with: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-node-deps: no apt-get here; install: ${PACKAGES[*]}" >&2
    exit 1
fi

# Keep an existing policy-rc.d (someone else's), put ours in place for the install only.
backup=""
if [[ -e "$POLICY" ]]; then
    backup="$($SUDO mktemp /usr/sbin/policy-rc.d.tj-backup.XXXXXX)"
    $SUDO cp -p "$POLICY" "$backup"
fi
restore() {
    if [[ -n "$backup" ]]; then
        $SUDO mv -f "$backup" "$POLICY"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore EXIT
printf '#!/bin/sh\n# scripts/install-node-deps.sh: start no service while installing\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 0755 "$POLICY"

echo "install-node-deps: installing ${missing[*]} (no service is started)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# systemd may still have the socket units enabled for the next boot; that is the
# distribution's default and not changed here. Say so if anything runs now.
for daemon in dockerd containerd; do
    if pgrep -x "$daemon" >/dev/null 2>&1; then
        echo "install-node-deps: note: a $daemon is running; this script did not start it" >&2
    fi
done
