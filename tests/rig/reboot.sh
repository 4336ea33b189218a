#!/bin/sh
# A guest reboot restarts the VM by default, and ends cvisor with --on-reboot exit.
# timeout: 420
# rig-cost: 35
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "mode=reboot, default --on-reboot: the VM restarts (CVISOR-GUEST-INIT twice)"
start_vm "$log" --kernel "$KERNEL" --initrd "$INITRD" --cmdline "console=ttyS0 mode=reboot"
deadline=$(($(date +%s) + 300))
while [ "$(count_of "$log" CVISOR-GUEST-INIT)" -lt 2 ]; do
	alive "$CVISOR_PID" || { wait_vm 1 || true; show_console "$log"; fail "cvisor exited (status $RC) instead of restarting the VM"; }
	[ "$(date +%s)" -lt $deadline ] || { show_console "$log"; fail "no second boot within 300 s"; }
	sleep 0.5
done
check "the guest booted $(count_of "$log" CVISOR-GUEST-INIT) times"

check "SIGTERM stops cvisor within 10 s"
pid=$CVISOR_PID
kill -TERM "$pid"
t0=$(date +%s)
wait_vm 10 || { show_console "$log"; fail "cvisor still running 10 s after SIGTERM"; }
check "cvisor exited $(($(date +%s) - t0)) s after SIGTERM; exit status recorded: $RC"

log2=$TMPDIR/console2.log
check "mode=reboot, --on-reboot exit: cvisor exits 0 after one boot"
run_vm 200 "$log2" --kernel "$KERNEL" --initrd "$INITRD" --on-reboot exit \
	--cmdline "console=ttyS0 mode=reboot"
expect_rc 0 "$log2"
n=$(count_of "$log2" CVISOR-GUEST-INIT)
[ "$n" = 1 ] || { show_console "$log2"; fail "the guest booted $n times, expected 1"; }
check "one boot"

log3=$TMPDIR/console3.log
check "mode=reboot with reboot=k (keyboard-controller reset), --on-reboot exit: exit 0 after one boot"
run_vm 200 "$log3" --kernel "$KERNEL" --initrd "$INITRD" --on-reboot exit \
	--cmdline "console=ttyS0 reboot=k mode=reboot"
expect_rc 0 "$log3"
n=$(count_of "$log3" CVISOR-GUEST-INIT)
[ "$n" = 1 ] || { show_console "$log3"; fail "the guest booted $n times, expected 1"; }
check "one boot, reset through the i8042"

log4=$TMPDIR/console4.log
check "a triple fault (reboot=t) also resets the VM"
run_vm 200 "$log4" --kernel "$KERNEL" --initrd "$INITRD" --on-reboot exit \
	--cmdline "console=ttyS0 reboot=t mode=reboot"
expect_rc 0 "$log4"
grep -q "triple fault" "$log4" || { show_console "$log4"; fail "cvisor did not report the triple fault"; }
# where the vCPU stopped comes with it (reboot=t loads an empty IDT, then faults)
# (on AMD, KVM resets the vCPU before it reports the shutdown: cvisor says so)
tf=$(tr -d '\r' <"$log4" | grep -o -e 'triple fault, resetting the VM (rip 0x[0-9a-f]* .* idt [0-9a-fx]*/0x[0-9a-f]*' \
	-e 'triple fault, resetting the VM (registers unknown: KVM reset the vCPU at the shutdown' | head -n1)
[ -n "$tf" ] || { show_console "$log4"; fail "the triple fault line has no registers"; }
check "triple fault reported and handled as a reset: ${tf#triple fault, resetting the VM }"
