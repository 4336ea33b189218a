#!/bin/sh
# Boot with 4 vCPUs (SMP through ACPI MADT); the guest must see all of them.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "bzImage, --cpus 4 --memory 256M, mode=info: exit 0, NPROC=4"
run_vm 260 "$log" --kernel "$KERNEL" --initrd "$INITRD" --cpus 4 --memory 256M \
	--cmdline "console=ttyS0 mode=info"
expect_rc 0 "$log"
nproc=$(field "$log" NPROC)
[ "$nproc" = 4 ] || { show_console "$log"; fail "NPROC='$nproc', expected 4"; }
check "NPROC=$nproc"
