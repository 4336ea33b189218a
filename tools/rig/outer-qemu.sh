#!/bin/sh
# Print the command that runs the rig's outer QEMU (L0 -> L1), fetching it first.
#
# The nested rig emulates its SVM CPU with QEMU's TCG. By default that is the
# system's qemu-system-x86_64 (Debian 12: QEMU 7.2). RIG_OUTER_QEMU=backports
# takes the QEMU of bookworm-backports instead (10.0 as of this writing), fetched
# once with apt (its own source list; signatures checked against the system's
# Debian keyring; the host's apt configuration left alone) and unpacked under
# build/rig/qemu-outer/; it falls back to the system's QEMU, with a warning, when
# that cannot be fetched or does not start.
#
# Why 7.2 stays the default (tools/rig/README.md): in one full make test under
# QEMU 10, L1 panicked three times and two L2 guests triple-faulted, more than
# in any run under 7.2. QEMU 10 is the more faithful CPU (7.2 hides OSXSAVE
# from L2's CPUID and makes every L2 warn about XSAVE sizes): use it to check
# CPU-feature paths.
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
[ "${RIG_OUTER_QEMU:-system}" = backports ] || { system; exit 0; }

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
