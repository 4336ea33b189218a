#!/bin/sh
# 3 GiB of guest memory: RAM must continue above 4 GiB (past the 32-bit PCI hole).
# timeout: 240
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "--memory 3G mode=info: exit 0 and MEMTOTAL_KB >= 2.8 GiB"
run_vm 200 "$log" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory 3G \
	--cmdline "console=ttyS0 mode=info"
expect_rc 0 "$log"
kb=$(field "$log" MEMTOTAL_KB)
min=$((28 * 1024 * 1024 / 10))
[ -n "$kb" ] && [ "$kb" -ge $min ] ||
	{ show_console "$log"; fail "MEMTOTAL_KB='$kb', expected >= $min (2.8 GiB)"; }
check "MEMTOTAL_KB=$kb"
