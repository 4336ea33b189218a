#!/bin/sh
# SIGTERM while the guest runs: cvisor exits promptly and leaves no processes behind.
# SIGUSR2 before it: each vCPU logs its state and the guest runs on.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "mode=shell, SIGTERM while running: exit within 5 s with status 0 or 143, no child processes left"
start_vm "$log" --kernel "$KERNEL" --initrd "$INITRD" --cpus 2 --cmdline "console=ttyS0 mode=shell"
wait_for "$log" CVISOR-GUEST-SHELL 200 || fail "the guest did not reach its shell"
pid=$CVISOR_PID
# SIGUSR2 is no stop: each vCPU logs where it is (what the tests print for a guest
# that stopped answering), and the guest runs on
vcpu_state
n=$(grep -c 'cvisor: warning: vCPU [01]: ' "$log" || true)
[ "$n" -ge 8 ] || { show_console "$log"; fail "SIGUSR2 twice: $n vCPU state lines (want 8)"; }
# and what each waits for: its LAPIC timer and pending interrupts
n=$(grep -c 'cvisor: warning: vCPU [01]: lapic on, timer [a-z-]* vector 0x[0-9a-f]*.*; irr .*; isr .*; kvmclock [0-9.]* s' "$log" || true)
[ "$n" -ge 4 ] || { show_console "$log"; fail "SIGUSR2 twice: $n vCPU timer lines (want 4)"; }
alive "$pid" || fail "cvisor died of SIGUSR2"
check "SIGUSR2: cvisor runs on and logs each vCPU: $(grep -m1 'vCPU 0: ' "$log" | cut -c1-120); $(grep -m1 'vCPU 0: lapic' "$log" | cut -c18-)"
kids=$(children_of "$pid")
[ -z "$kids" ] || say "cvisor's child processes before SIGTERM: $kids"
kill -TERM "$pid"
t0=$(date +%s)
wait_vm 5 || { show_console "$log"; fail "cvisor still running 5 s after SIGTERM"; }
check "cvisor exited with status $RC within $(($(date +%s) - t0)) s"
case $RC in 0 | 143) ;; *) show_console "$log"; fail "status $RC after SIGTERM, expected 0 or 143" ;; esac
for k in $kids; do
	alive "$k" && { ps; fail "child process $k of cvisor survived it"; }
done
left=$(children_of "$pid")
[ -z "$left" ] || fail "processes with cvisor ($pid) as parent remain: $left"
check "no child processes left"
