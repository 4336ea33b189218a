#!/bin/sh
# cvisord: 8 small VMs created and started through the daemon and listed running; kill -9
# of a VM process restarts it per policy; kill -9 of cvisord and a restart: every VM still
# running, listed, adopted and not duplicated; the console through the daemon (scrollback,
# two viewers, input); cgroup v2: a CPU-bound guest under cpu.max 20% uses 15-25% of a CPU;
# restart policy never, ACPI shutdown, destroy, delete, metrics.
# timeout: 1500
# rig-cost: 130
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"

NVMS=8
state=$TMPDIR/state
dlog=$TMPDIR/cvisord.log
export CVISORD_SOCKET=$state/cvisord.sock
DPID=

vm() { "$CVISOR" vm "$@"; }

# The daemon's resident memory and CPU time so far (for the log).
daemon_cost() {
	_rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DPID/status" 2>/dev/null)
	_cpu=$(sed 's/.*) //' "/proc/$DPID/stat" 2>/dev/null | awk '{ print ($12 + $13) * 10 }')
	say "cvisord: RSS ${_rss:-?} kB, CPU ${_cpu:-?} ms since its start"
}

# The PIDs of the cvisor processes the daemon started (zombies have no command line).
vmm_pids() {
	for _c in /proc/[0-9]*/cmdline; do
		_a=$(tr '\0' ' ' <"$_c" 2>/dev/null) || continue
		case $_a in
		*" run "*"--api-socket $state/vms/"*) _p=${_c#/proc/}; echo "${_p%/cmdline}" ;;
		esac
	done
	return 0
}
vmm_count() { vmm_pids | wc -l | tr -d ' '; }

# A column of `cvisor vm list` for VM $1: 2 state, 3 pid, 5 restarts.
col() { vm list | awk -v n="$1" -v f="$2" '$1 == n { print $f }'; }

start_daemon() {
	"$CVISORD" --state-dir "$state" >>"$dlog" 2>&1 &
	DPID=$!
	_i=0
	while ! vm list >/dev/null 2>&1; do
		_i=$((_i + 1))
		[ $_i -lt 100 ] || fail "cvisord did not answer on $CVISORD_SOCKET within 20 s"
		alive "$DPID" || fail "cvisord exited at start"
		sleep 0.2
	done
}

# wait_state NAME STATE TIMEOUT
wait_state() {
	_d=$(($(date +%s) + $3))
	while [ "$(col "$1" 2)" != "$2" ]; do
		[ "$(date +%s)" -lt $_d ] || { vm info "$1"; fail "$1 is not $2 after $3 s"; }
		sleep 0.5
	done
}

# scrollback NAME: what a new console viewer gets first (input ends at once: 1 s linger).
scrollback() { vm console "$1" </dev/null 2>/dev/null | tr -d '\r'; }

dump() {
	[ -z "$DPID" ] || daemon_cost
	echo "----- cvisord log -----"
	cat "$dlog" 2>/dev/null || true
	vm list 2>&1 || true
	for _n in $(seq 1 $NVMS); do
		echo "----- vm$_n: vmm.log, scrollback -----"
		tail -n 20 "$state/vms/vm$_n/vmm.log" 2>/dev/null || true
		scrollback "vm$_n" 2>/dev/null | tail -n 30 || true
	done
	ps 2>/dev/null | grep -v ' \[' || true
}

cleanup() {
	_rc=$?
	trap - EXIT
	[ $_rc = 0 ] || dump
	for _p in ${V1PID:-} ${V2PID:-} ${V3PID:-}; do kill "$_p" 2>/dev/null || true; done
	exec 4>&- 5>&- 6>&-
	for _p in $(vmm_pids); do kill -KILL "$_p" 2>/dev/null || true; done
	[ -z "$DPID" ] || kill -KILL "$DPID" 2>/dev/null || true
	exit $_rc
}
trap cleanup EXIT

[ -x "${CVISORD:-}" ] || fail "cvisord is missing (${CVISORD:-unset}): build it with make"
mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
say "L1: $(nproc) CPUs, $((mem_kb / 1024)) MiB"
[ "$mem_kb" -ge 5500000 ] || fail "L1 has $((mem_kb / 1024)) MiB; $NVMS VMs of 160M want the rig's 6 GiB"
[ -f /sys/fs/cgroup/cgroup.controllers ] || fail "L1 has no cgroup v2 at /sys/fs/cgroup"
grep -qw cpu /sys/fs/cgroup/cgroup.controllers || fail "L1's cgroup v2 has no cpu controller"

check "cvisord starts on an empty state directory; bad input is refused with exit status 2"
start_daemon
[ -z "$(vm list | sed 1d)" ] || fail "a fresh daemon lists VMs"
common="--kernel $KERNEL --initrd $INITRD --memory 160M --cpus 1"
rc=0; vm create bad1 --kernel /nonexistent/vmlinuz 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] && grep -q 'No such file' "$TMPDIR/err" || fail "missing kernel: rc $rc, $(cat "$TMPDIR/err")"
rc=0; vm create bad2 $common --memory lots 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] || fail "bad --memory: rc $rc"
rc=0; vm create bad3 $common --serial stdio 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] || fail "--serial accepted"
rc=0; vm create 'bad/4' $common 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] || fail "bad name accepted"
rc=0; vm create bad5 $common --cpu-quota 0 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] || fail "--cpu-quota 0 accepted"
[ -z "$(vm list | sed 1d)" ] || fail "a refused definition was stored"

check "$NVMS VMs of 160M created and started"
for i in $(seq 1 $NVMS); do
	extra="--restart on-failure"
	# a limit set at creation (generous: a guest starved at boot crawls under nested TCG)
	[ $i = 1 ] && extra="--restart on-failure --cpu-quota 90 --cpu-weight 200"
	vm create "vm$i" $common --cmdline "console=ttyS0 mode=shell" $extra >/dev/null
done
vm create dup $common >/dev/null
rc=0; vm create dup $common 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "a second VM named dup: rc $rc"
vm delete dup >/dev/null
# One after the other, each to its shell prompt (seen through the daemon's console
# scrollback): eight kernels booting at once on L1's two emulated CPUs stall now and then.
for i in $(seq 1 $NVMS); do
	vm start "vm$i"
	t0=$(date +%s)
	shown=0
	while ! scrollback "vm$i" >"$TMPDIR/sb" || ! grep -q 'cvisor-guest# ' "$TMPDIR/sb"; do
		[ "$(col "vm$i" 2)" = running ] || fail "vm$i is $(col "vm$i" 2) while booting"
		if [ $shown = 0 ] && [ $(($(date +%s) - t0)) -gt 180 ]; then
			shown=1
			say "vm$i: no prompt yet; its console so far ($(wc -c <"$TMPDIR/sb") bytes):"
			tail -n 15 "$TMPDIR/sb"
			vm info "vm$i"
		fi
		[ $(($(date +%s) - t0)) -lt 400 ] || fail "vm$i shows no shell prompt"
		sleep 2
	done
	say "vm$i: shell prompt after $(($(date +%s) - t0)) s"
done
daemon_cost
vm list
[ "$(vm list | awk '$2 == "running"' | wc -l)" = $NVMS ] || fail "not all $NVMS VMs are listed running"
[ "$(vmm_count)" = $NVMS ] || fail "$(vmm_count) cvisor processes, expected $NVMS"
check "all $NVMS listed running, $NVMS cvisor processes, every guest at its shell"

check "kill -9 of vm3's process: restarted per policy (on-failure), after about 1 s"
old=$(col vm3 3)
kill -KILL "$old"
t0=$(date +%s)
while [ "$(col vm3 5)" != 1 ] || [ "$(col vm3 2)" != running ]; do
	[ $(($(date +%s) - t0)) -lt 20 ] || { vm info vm3; fail "vm3 was not restarted within 20 s"; }
	sleep 0.2
done
new=$(col vm3 3)
[ "$new" != "$old" ] || fail "vm3 has its old PID"
vm info vm3 | grep -q 'Last exit: *killed by signal 9' || { vm info vm3; fail "vm3's last exit is not SIGKILL"; }
[ "$(vmm_count)" = $NVMS ] || fail "$(vmm_count) cvisor processes after the restart"
check "vm3 restarted as process $new within $(($(date +%s) - t0)) s (restarts 1), $NVMS processes"

check "kill -9 of cvisord: the VMs run on; a new cvisord adopts them without duplicates"
before=$(vmm_pids | sort | tr '\n' ' ')
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null || true
sleep 2
after=$(vmm_pids | sort | tr '\n' ' ')
[ "$before" = "$after" ] || fail "VM processes changed with the daemon's death: '$before' -> '$after'"
start_daemon
vm list
[ "$(vm list | awk '$2 == "running"' | wc -l)" = $NVMS ] || fail "not all VMs listed running after the daemon's restart"
sleep 3
after=$(vmm_pids | sort | tr '\n' ' ')
[ "$before" = "$after" ] || fail "VM processes changed with the daemon's restart: '$before' -> '$after'"
for i in $(seq 1 $NVMS); do
	pid=$(col "vm$i" 3)
	case " $after " in *" $pid "*) ;; *) fail "vm$i is listed with PID $pid, not one of its processes" ;; esac
done
vm info vm5 | grep -q 'adopted after a daemon restart' || { vm info vm5; fail "vm5 not adopted"; }
check "$NVMS processes, the same PIDs, all adopted"
daemon_cost

check "console: two viewers, the prompt, input from one seen by both"
rm -f "$TMPDIR/in1" "$TMPDIR/in2"
mkfifo "$TMPDIR/in1" "$TMPDIR/in2"
vm console vm2 <"$TMPDIR/in1" >"$TMPDIR/view1" 2>&1 &
V1PID=$!
vm console vm2 <"$TMPDIR/in2" >"$TMPDIR/view2" 2>&1 &
V2PID=$!
exec 4>"$TMPDIR/in1" 5>"$TMPDIR/in2"
sleep 1
printf '\n' >&4
wait_for "$TMPDIR/view1" 'cvisor-guest# ' 60 || fail "viewer 1 sees no prompt"
wait_for "$TMPDIR/view2" 'cvisor-guest# ' 60 || fail "viewer 2 sees no prompt"
printf 'echo "con-$((6 * 7))-sole"\n' >&4
wait_for "$TMPDIR/view1" 'con-42-sole' 60 || fail "viewer 1: no answer"
wait_for "$TMPDIR/view2" 'con-42-sole' 60 || fail "viewer 2 does not see viewer 1's command"
printf 'echo "from-$((2 + 3))-two"\n' >&5
wait_for "$TMPDIR/view1" 'from-5-two' 60 || fail "viewer 1 does not see viewer 2's command"
scrollback vm2 | grep -q 'con-42-sole' || fail "a new viewer does not get the scrollback"
vm info vm2 | grep -q '2 viewer(s)' || { vm info vm2; fail "info does not count 2 viewers"; }
exec 5>&-
kill "$V2PID" 2>/dev/null || true
V2PID=

check "cgroup v2: vm1 in its own cgroup with the limits given at creation"
cg=/sys/fs/cgroup/cvisor.slice/vm-vm1
[ -f "$cg/cpu.max" ] || { ls /sys/fs/cgroup/cvisor.slice; fail "no cgroup $cg"; }
[ "$(cat "$cg/cpu.max")" = "90000 100000" ] || fail "cpu.max is '$(cat "$cg/cpu.max")'"
[ "$(cat "$cg/cpu.weight")" = 200 ] || fail "cpu.weight is '$(cat "$cg/cpu.weight")'"
pid=$(col vm1 3)
grep -q "^0::/cvisor.slice/vm-vm1\$" "/proc/$pid/cgroup" || fail "vm1's process is not in its cgroup: $(cat "/proc/$pid/cgroup")"
rm -f "$TMPDIR/in3"
mkfifo "$TMPDIR/in3"
vm console vm1 <"$TMPDIR/in3" >"$TMPDIR/view3" 2>&1 &
V3PID=$!
exec 6>"$TMPDIR/in3"
sleep 1
printf 'while :; do :; done &\necho "busy-$((1 + 1))-loop"\n' >&6
wait_for "$TMPDIR/view3" 'busy-2-loop' 120 || fail "vm1 did not start its busy loop"
usage() { awk '$1 == "usage_usec" { print $2 }' "$cg/cpu.stat"; }

check "cgroup v2: vm1 with a busy loop under cpu.max 20% (set live) uses 15-25% of a CPU over 10 s"
vm set vm1 --cpu-quota 20
[ "$(cat "$cg/cpu.max")" = "20000 100000" ] || fail "cpu.max is '$(cat "$cg/cpu.max")'"
sleep 3
u0=$(usage); t0=$(awk '{ print int($1 * 1000) }' /proc/uptime)
sleep 10
u1=$(usage); t1=$(awk '{ print int($1 * 1000) }' /proc/uptime)
pct=$(( (u1 - u0) / (t1 - t0) / 10 ))
say "vm1 used $((u1 - u0)) us of CPU in $((t1 - t0)) ms: ${pct}% (throttled: $(grep nr_throttled "$cg/cpu.stat"))"
[ $pct -ge 15 ] && [ $pct -le 25 ] || fail "vm1 used ${pct}% under cpu.max 20%"
vm info vm1 | grep -q 'cpu quota: *20% of one CPU' || { vm info vm1; fail "info does not show the quota"; }
check "${pct}% of a CPU under a 20% quota"

check "limits change live: without the quota the same guest uses more than 35%"
vm set vm1 --cpu-quota none
[ "$(cat "$cg/cpu.max")" = "max 100000" ] || fail "cpu.max is '$(cat "$cg/cpu.max")' after clearing"
sleep 2
u0=$(usage); t0=$(awk '{ print int($1 * 1000) }' /proc/uptime)
sleep 5
u1=$(usage); t1=$(awk '{ print int($1 * 1000) }' /proc/uptime)
pct=$(( (u1 - u0) / (t1 - t0) / 10 ))
say "vm1 without a quota: ${pct}%"
[ $pct -gt 35 ] || fail "vm1 used only ${pct}% without a quota"
vm set vm1 --cpu-quota 80 --memory-max 512M --cpu-weight 50
[ "$(cat "$cg/cpu.max")" = "80000 100000" ] || fail "cpu.max is '$(cat "$cg/cpu.max")'"
[ "$(cat "$cg/memory.max")" = $((512 * 1024 * 1024)) ] || fail "memory.max is '$(cat "$cg/memory.max")'"
[ "$(cat "$cg/cpu.weight")" = 50 ] || fail "cpu.weight is '$(cat "$cg/cpu.weight")'"
rc=0; vm set vm1 --memory-max 64M 2>"$TMPDIR/err" || rc=$?
[ $rc = 2 ] || fail "memory-max below the guest's memory accepted"
printf 'kill %%1\n' >&6
exec 6>&-
kill "$V3PID" 2>/dev/null || true
V3PID=

check "metrics: the daemon's families and each VM's own, labelled with vm=\"NAME\""
vm metrics >"$TMPDIR/metrics"
grep -q '^cvisord_vm_up{vm="vm1"} 1$' "$TMPDIR/metrics" || fail "no cvisord_vm_up for vm1"
grep -q '^cvisord_vm_restarts_total{vm="vm3"} 1$' "$TMPDIR/metrics" || fail "vm3's restarts"
n=$(grep -c '^cvisor_[a-z_]*{vm="vm4"' "$TMPDIR/metrics" || true)
say "$(wc -l <"$TMPDIR/metrics") lines of metrics; $n samples of vm4's own"
[ "$n" -gt 0 ] || { head -50 "$TMPDIR/metrics"; fail "no metrics of vm4's own API"; }
dups=$(grep '^# TYPE ' "$TMPDIR/metrics" | sort | uniq -d | head -n 3)
[ -z "$dups" ] || fail "metric families declared twice: $dups"

check "restart policy never: vm8 killed with SIGKILL stays stopped"
vm set vm8 --restart never >/dev/null
kill -KILL "$(col vm8 3)"
wait_state vm8 stopped 10
sleep 3
[ "$(col vm8 2)" = stopped ] || fail "vm8 was restarted"

check "shutdown of an adopted VM: the ACPI power button powers vm7 off; it stays stopped"
vm shutdown vm7
wait_state vm7 stopped 120
scrollback vm7 | grep -q 'reboot: Power down' || fail "vm7's guest did not power off"
vm info vm7 | grep 'Last exit:'

check "a VM started by this daemon: vm8 again, then shut down: exit status 0, not restarted"
vm set vm8 --restart on-failure >/dev/null
vm start vm8
t0=$(date +%s)
# (the scrollback holds the earlier run too: look after the daemon's note of its end)
until scrollback vm8 | awk '/\[cvisord: / { n = 0; next } /cvisor-guest# / { n++ } END { exit !n }'; do
	[ $(($(date +%s) - t0)) -lt 300 ] || fail "vm8 shows no prompt after its restart"
	sleep 3
done
vm shutdown vm8
wait_state vm8 stopped 120
vm info vm8 | grep -q 'Last exit: *exit status 0' || { vm info vm8; fail "vm8 did not exit with status 0"; }
sleep 3
[ "$(col vm8 2)" = stopped ] || fail "vm8 was restarted after a clean shutdown"

check "destroy and delete: a running VM cannot be deleted; destroyed it can"
rc=0; vm delete vm6 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "deleting a running VM: rc $rc"
vm destroy vm6
vm delete vm6
[ -z "$(col vm6 2)" ] || fail "vm6 is still listed"
[ ! -d "$state/vms/vm6" ] || fail "vm6's directory is still there"
[ "$(vmm_count)" = $((NVMS - 3)) ] || fail "$(vmm_count) cvisor processes, expected $((NVMS - 3))"

check "the definitions survive a kill -9 of the daemon: stopped VMs stay defined and stopped"
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null || true
start_daemon
[ "$(col vm8 2)" = stopped ] && [ "$(col vm7 2)" = stopped ] || { vm list; fail "stopped VMs changed"; }
[ "$(vm list | sed 1d | wc -l)" = $((NVMS - 1)) ] || { vm list; fail "definitions lost"; }
[ "$(vmm_count)" = $((NVMS - 3)) ] || fail "$(vmm_count) cvisor processes after the second restart"
vm start vm8 >/dev/null
wait_state vm8 running 10
for i in $(seq 1 $NVMS); do
	[ $i = 6 ] || [ $i = 7 ] && continue
	vm destroy "vm$i" >/dev/null
done
[ "$(vmm_count)" = 0 ] || fail "$(vmm_count) cvisor processes after destroying all"
check "all destroyed, no cvisor process left"
