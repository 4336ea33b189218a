# Helpers for the host-side image tests (sourced). Each test prints one
# "PASS name" or "FAIL name" line per check and exits non-zero if any failed.
# Environment: CVISOR (default build/cvisor), QEMU_IMG, QEMU_IO.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CVISOR=${CVISOR:-$ROOT/build/cvisor}
case $CVISOR in /*) ;; *) CVISOR=$(pwd)/$CVISOR ;; esac
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
T=$(mktemp -d "${TMPDIR:-/tmp}/cvisor-img.XXXXXX")
trap 'rm -rf "$T"' EXIT
failures=0

pass() { echo "PASS $1"; }
fail() {
	echo "FAIL $1${2:+: $2}"
	failures=$((failures + 1))
}
# ok NAME CMD...: PASS if CMD succeeds (its output goes to $T/out), else FAIL with the output.
ok() {
	_n=$1
	shift
	if "$@" >"$T/out" 2>&1; then
		pass "$_n"
	else
		fail "$_n" "$(tail -n 5 "$T/out" | tr '\n' ' ')"
	fi
}
# qcheck IMG: qemu-img check finds nothing at all
qcheck() { "$QEMU_IMG" check -q "$1"; }
# same_raw IMG: cvisor and qemu-img convert IMG to the same raw bytes
same_raw() {
	rm -f "$T/ref.raw" "$T/got.raw"
	"$QEMU_IMG" convert -O raw "$1" "$T/ref.raw" &&
		"$CVISOR" img convert -O raw "$1" "$T/got.raw" &&
		cmp -s "$T/ref.raw" "$T/got.raw"
}
finish() {
	[ "$failures" = 0 ]
	exit $?
}
if [ ! -x "$CVISOR" ] || ! command -v "$QEMU_IMG" >/dev/null || ! command -v "$QEMU_IO" >/dev/null; then
	echo "FAIL $(basename "$0" .sh):setup (needs $CVISOR, qemu-img and qemu-io)"
	exit 1
fi
