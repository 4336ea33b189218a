#!/bin/sh
# The guest powers itself off (ACPI S5): cvisor exits 0. Console through --serial file=.
# timeout: 240
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log
out=$TMPDIR/cvisor.out

check "mode=poweroff with --serial file=: cvisor exits 0, console shows CVISOR-GUEST-POWEROFF"
run_vm 200 "$out" --kernel "$KERNEL" --initrd "$INITRD" --serial "file=$log" \
	--cmdline "console=ttyS0 mode=poweroff"
[ -s "$out" ] && { echo "cvisor's own output:"; cat "$out"; }
expect_rc 0 "$log"
grep -q CVISOR-GUEST-POWEROFF "$log" || { show_console "$log"; fail "no CVISOR-GUEST-POWEROFF on the console"; }
check "the console file shows CVISOR-GUEST-POWEROFF"
