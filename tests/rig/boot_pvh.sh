#!/bin/sh
# Boot the uncompressed ELF vmlinux through its PVH entry note.
# timeout: 240
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log
: "${VMLINUX:?}"

check "--kernel vmlinux (ELF, PVH entry), mode=info: reaches init, powers off, exit 0"
run_vm 200 "$log" --kernel "$VMLINUX" --initrd "$INITRD" --cpus 1 --memory 512M \
	--cmdline "console=ttyS0 mode=info"
grep -q CVISOR-GUEST-INIT "$log" || { show_console "$log"; fail "the guest never reached init"; }
check "the guest reached init"
grep -q 'NPROC=1 ' "$log" || { show_console "$log"; fail "no 'NPROC=1' line"; }
expect_rc 0 "$log"
