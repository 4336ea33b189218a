#!/bin/sh
# Install the Debian packages cvisor needs, only those missing. Idempotent.
# Usage: tools/deps.sh [build|rig|all]   (default: all)
set -eu

build_pkgs="gcc make meson ninja-build pkg-config libcmocka-dev clang libclang-rt-14-dev"
build_pkgs="$build_pkgs libjson-c-dev libmicrohttpd-dev"
build_pkgs="$build_pkgs zlib1g-dev libzstd-dev qemu-utils" # qcow2; qemu-img/qemu-io for tests/img
build_pkgs="$build_pkgs libsqlite3-dev" # cvisord's inventory
build_pkgs="$build_pkgs libssl-dev" # libcrypto: HMAC-SHA256 on migration streams
rig_pkgs="qemu-system-x86 busybox-static cpio e2fsprogs xz-utils zstd gzip kmod iproute2"

case "${1:-all}" in
build) want="$build_pkgs" ;;
rig) want="$rig_pkgs" ;;
*) want="$build_pkgs $rig_pkgs" ;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "deps: missing packages:$missing (run as root or install them)" >&2
		exit 1
	fi
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
