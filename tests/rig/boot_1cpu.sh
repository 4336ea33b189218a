#!/bin/sh
# Boot the bzImage with 1 vCPU and 512 MiB; the guest reports what it sees.
# timeout: 240
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "bzImage, --cpus 1 --memory 512M, mode=info: exit 0, NPROC=1, MemTotal 85-100% of 512 MiB"
t0=$(date +%s)
run_vm 200 "$log" --kernel "$KERNEL" --initrd "$INITRD" --cpus 1 --memory 512M \
	--cmdline "console=ttyS0 mode=info"
expect_rc 0 "$log"
say "cvisor ran $(($(date +%s) - t0)) s; the guest reached init at uptime $(tr -d '\r' <"$log" | sed -n 's/^CVISOR-GUEST-UPTIME //p') s"
grep -q CVISOR-GUEST-INIT "$log" || { show_console "$log"; fail "the guest never reached init"; }
nproc=$(field "$log" NPROC)
kb=$(field "$log" MEMTOTAL_KB)
[ "$nproc" = 1 ] || { show_console "$log"; fail "NPROC='$nproc', expected 1"; }
check "NPROC=$nproc"
full=$((512 * 1024))
[ -n "$kb" ] && [ "$kb" -ge $((full * 85 / 100)) ] && [ "$kb" -le "$full" ] ||
	{ show_console "$log"; fail "MEMTOTAL_KB='$kb', expected $((full * 85 / 100))..$full"; }
check "MEMTOTAL_KB=$kb ($((kb * 100 / full))% of 512 MiB)"
