#!/bin/sh
# Print the command that runs the rig's outer QEMU (L0 -> L1), fetching it first.
#
# The nested rig emulates its SVM CPU with QEMU's TCG. Debian 12's own QEMU (7.2)
# hangs or panics L1 now and then under this load (tools/rig/README.md); the rig
# prefers the QEMU of bookworm-backports, a Debian build of a later release, fetched
# once with apt (signatures checked against the system's Debian keyring, the host's
# own apt configuration left alone) and unpacked under build/rig/qemu-outer/.
#
# RIG_OUTER_QEMU=system uses the system's qemu-system-x86_64 instead;
# RIG_OUTER_QEMU=backports (the default) falls back to it, with a warning, when the
# backports build cannot be fetched or does not start.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RIG=$ROOT/build/rig
Q=$RIG/qemu-outer
SUITE=bookworm-backports
PKGS="qemu-system-x86 qemu-system-data seabios"

system() {
	q=$(command -v qemu-system-x86_64) || { echo "rig: qemu-system-x86_64 not found" >&2; exit 1; }
	echo "$q"
}
[ "${RIG_OUTER_QEMU:-backports}" = system ] && { system; exit 0; }

# It must load none of the system QEMU's modules, which belong to another build (it
# aborts on them): QEMU_MODULE_DIR is an empty directory and -audio none keeps it
# from probing the audio modules (the rig's -nographic loads no display module).
run="env QEMU_MODULE_DIR=$Q/modules $Q/root/usr/bin/qemu-system-x86_64 -L $Q/root/usr/share/qemu -L $Q/root/usr/share/seabios -audio none"
if [ ! -x "$Q/root/usr/bin/qemu-system-x86_64" ]; then
	(
		set -e
		rm -rf "$Q.tmp"
		mkdir -p "$Q.tmp/lists/partial" "$Q.tmp/cache/archives/partial" "$Q.tmp/debs"
		echo "deb http://deb.debian.org/debian $SUITE main" >"$Q.tmp/sources.list"
		set -- -o Dir::Etc::SourceList="$Q.tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null \
			-o Dir::State::Lists="$Q.tmp/lists" -o Dir::Cache="$Q.tmp/cache" -o APT::Sandbox::User=root
		apt-get -q "$@" update >"$Q.tmp/apt.log" 2>&1
		p=
		for k in $PKGS; do p="$p $k/$SUITE"; done
		# shellcheck disable=SC2086
		(cd "$Q.tmp/debs" && apt-get -q "$@" download $p) >>"$Q.tmp/apt.log" 2>&1
		for d in "$Q.tmp/debs"/*.deb; do dpkg-deb -x "$d" "$Q.tmp/root"; done
		rm -rf "$Q.tmp/lists" "$Q.tmp/cache" "$Q.tmp/debs"
		mkdir -p "$Q.tmp/modules"
	) || {
		echo "rig: warning: cannot fetch QEMU from $SUITE (see $Q.tmp/apt.log); the system's QEMU is the outer QEMU" >&2
		system
		exit 0
	}
	rm -rf "$Q" && mv "$Q.tmp" "$Q"
fi
# shellcheck disable=SC2086
mkdir -p "$Q/modules"
# (a machine that starts TCG and quits)
if ! echo quit | timeout 30 $run -M pc -accel tcg -nographic -serial none -monitor stdio >"$Q/start.log" 2>&1; then
	echo "rig: warning: $Q does not start here ($(grep -v QEMU "$Q/start.log" | head -n1)); the system's QEMU is the outer QEMU" >&2
	system
	exit 0
fi
echo "$run"
