#!/bin/sh
# Rig self-test: QEMU (KVM) boots the L2 guest assets inside L1; mode=info prints the
# CPU count and memory seen. Run: tools/rig/rig.sh --with-qemu tools/rig/selftest/*.sh
# timeout: 240
set -eu
. "${RIG_LIB:-$(dirname "$0")/../../../tests/rig/lib.sh}"
: "${QEMU:?QEMU is not set: run with tools/rig/rig.sh --with-qemu}"
log=$TMPDIR/console.log

check "QEMU microvm, 2 vCPUs, 512 MiB, bzImage + L2 initramfs, mode=info"
t0=$(date +%s)
timeout 200 "$QEMU" -M microvm -accel kvm -cpu host -smp 2 -m 512 -nographic -no-reboot \
	-kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 mode=info" </dev/null >"$log" 2>&1 || RC=$?
echo "QEMU ran $(($(date +%s) - t0)) s, status ${RC:-0}"
tr -d '\r' <"$log" | grep -E 'CVISOR-GUEST|NPROC' || true
[ "$(field "$log" NPROC)" = 2 ] || { show_console "$log"; fail "NPROC is not 2"; }
kb=$(field "$log" MEMTOTAL_KB)
[ -n "$kb" ] && [ "$kb" -gt $((512 * 1024 * 85 / 100)) ] || { show_console "$log"; fail "MEMTOTAL_KB='$kb'"; }
check "NPROC=2 MEMTOTAL_KB=$kb"
