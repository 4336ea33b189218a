# Helpers for the rig tests (sourced; POSIX sh, busybox ash compatible).
# Environment from tools/rig/rig.sh: CVISOR KERNEL VMLINUX INITRD TMPDIR RIG_MODE.
# Start a test with:   set -eu; . "${RIG_LIB:-$(dirname "$0")/lib.sh}"

: "${CVISOR:?CVISOR is not set (run tests through tools/rig/rig.sh)}"
: "${KERNEL:?}" "${INITRD:?}" "${TMPDIR:=/tmp}"
export TMPDIR
CVISOR_PID=
RC=

say() { echo "rig: $*"; }
check() { echo "check: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# show_console FILE: print a guest console log, delimited.
# (Diagnostics go to stderr: a helper called inside $(...) must still show them.)
show_console() {
	{
		echo "----- console: $1 -----"
		if [ -f "$1" ]; then tr -d '\r' <"$1"; else echo "(no such file)"; fi
		echo "----- end of console: $1 -----"
	} >&2
}

# vcpu_state: a guest that stopped answering: cvisor logs each vCPU's state
# (SIGUSR2) into its console, twice a second apart (running on or stuck?).
vcpu_state() {
	[ -n "$CVISOR_PID" ] && alive "$CVISOR_PID" || return 0
	kill -USR2 "$CVISOR_PID" 2>/dev/null || return 0
	sleep 1
	kill -USR2 "$CVISOR_PID" 2>/dev/null || true
	sleep 1
}

# migration_end STEPS DPID: after a migrate request that is to fail, wait (STEPS x
# 0.2 s) until the source's migration is no longer active and then for the
# destination DPID to exit; sets st (the source's migration state) and drc (the
# destination's exit status). Needs the test's mig_state.
migration_end() {
	_i=0
	while [ "$(mig_state)" = active ] && [ $_i -lt "$1" ]; do sleep 0.2; _i=$((_i + 1)); done
	st=$(mig_state)
	_i=0
	while alive "$2" && [ $_i -lt 100 ]; do sleep 0.2; _i=$((_i + 1)); done
	drc=0
	wait "$2" || drc=$?
}

# wait_for FILE PATTERN TIMEOUT: poll FILE until `grep -q PATTERN` matches.
# On timeout print the whole file and return 1.
wait_for() {
	_deadline=$(($(date +%s) + $3))
	while ! grep -q -- "$2" "$1" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$_deadline" ]; then
			echo "timed out after $3 s waiting for '$2' in $1" >&2
			vcpu_state
			show_console "$1"
			return 1
		fi
		sleep 0.2
	done
}

# The guest's "TICK n md5" lines (the migration and snapshot tests), whole ones only:
# cvisor's own messages share the console and can land inside a guest line, and
# the last line may be half-written.
ticks() { tr -d '\r' <"$1" | grep -E '^TICK [0-9]+ [0-9a-f]{32}$' || true; }
last_tick() { ticks "$1" | awk '$2 > m { m = $2 } END { print m + 0 }'; }
first_tick() { ticks "$1" | head -n1 | cut -d' ' -f2; }
tick_sums() { ticks "$1" | awk '{ print $3 }' | sort -u; }
# wait_tick FILE N TIMEOUT: wait for a whole tick line numbered N or more.
wait_tick() {
	_deadline=$(($(date +%s) + $3))
	while [ "$(last_tick "$1")" -lt "$2" ]; do
		if [ "$(date +%s)" -ge "$_deadline" ]; then
			echo "timed out after $3 s waiting for tick $2 in $1" >&2
			vcpu_state
			show_console "$1"
			return 1
		fi
		sleep 0.2
	done
}

# start_ticking_guest LOG ARGS...: boot mode=shell with a disk (ARGS), mount it on
# /mnt, keep 32 MiB of random data in /dev/shm/blob and print "TICK n md5" every
# second; sets sum0 (the data's md5) and src_pid. The migration tests' source.
start_ticking_guest() {
	_tlog=$1
	shell_start "$@"
	_out=$(shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && dd if=/dev/urandom of=/dev/shm/blob bs=1M count=32 2>/dev/null && md5sum </dev/shm/blob | cut -c1-32" 120)
	sum0=$(echo "$_out" | grep -o "^[0-9a-f]\{32\}$" | tail -n1)
	[ ${#sum0} = 32 ] || { show_console "$_tlog"; fail "guest set-up failed"; }
	shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i \$(md5sum </dev/shm/blob | cut -c1-32); sleep 1; done) &" >/dev/null
	wait_tick "$_tlog" 2 60 || fail "no ticks"
	src_pid=$CVISOR_PID
	check "source ticking, data md5 $sum0"
}

# poweroff_dest: power off the guest of a migration's destination ($dst, console
# $dlog, its stdin on fd 4) and check it exits 0.
poweroff_dest() {
	printf 'poweroff -f\n' >&4
	_i=0
	while alive $dst && [ $_i -lt 150 ]; do sleep 0.2; _i=$((_i + 1)); done
	_drc=0
	wait $dst || _drc=$?
	dst=
	exec 4>&-
	[ "$_drc" = 0 ] || { show_console "$dlog"; fail "destination exited $_drc"; }
	check "destination powered off with exit 0"
}

# count_of FILE PATTERN: number of lines of FILE matching PATTERN.
count_of() { grep -c -- "$2" "$1" 2>/dev/null || true; }

# field FILE KEY: the value of the first KEY=value on the console (digits).
field() { tr -d '\r' <"$1" | grep -o "$2=[0-9]*" | head -n1 | cut -d= -f2; }

# alive PID: true while PID runs (a zombie counts as gone).
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	_st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$_st" ] && [ "$_st" != Z ] && [ "$_st" != X ]
}

# children_of PID: the PIDs whose parent is PID.
children_of() {
	for _s in /proc/[0-9]*/stat; do
		_pp=$(sed 's/.*) //' "$_s" 2>/dev/null | cut -d' ' -f2)
		[ "$_pp" = "$1" ] && { _c=${_s#/proc/}; echo "${_c%/stat}"; }
	done
	return 0
}

# start_vm LOG ARGS...: start `cvisor run ARGS` in the background, console (stdout and
# stderr) to LOG, stdin from /dev/null unless VM_STDIN names another file.
start_vm() {
	_log=$1
	shift
	if [ -n "${VMM_CMD:-}" ]; then
		# another VMM (benchmarks: QEMU) with the guest console on stdio
		echo "+ $VMM_CMD $*"
		$VMM_CMD "$@" <"${VM_STDIN:-/dev/null}" >"$_log" 2>&1 &
	else
		echo "+ cvisor run $*"
		"$CVISOR" run "$@" <"${VM_STDIN:-/dev/null}" >"$_log" 2>&1 &
	fi
	CVISOR_PID=$!
}

# wait_vm TIMEOUT: wait for cvisor to exit; sets RC. On timeout, stop it (TERM, then
# KILL) and return 1.
wait_vm() {
	_deadline=$(($(date +%s) + $1))
	while alive "$CVISOR_PID"; do
		if [ "$(date +%s)" -ge "$_deadline" ]; then
			echo "cvisor (pid $CVISOR_PID) still running after $1 s; stopping it"
			vcpu_state
			stop_vm
			return 1
		fi
		sleep 0.2
	done
	RC=0
	wait "$CVISOR_PID" || RC=$?
	CVISOR_PID=
}

# stop_vm: SIGTERM cvisor, SIGKILL after 10 s.
stop_vm() {
	[ -n "$CVISOR_PID" ] || return 0
	kill -TERM "$CVISOR_PID" 2>/dev/null || true
	_i=0
	while alive "$CVISOR_PID" && [ $_i -lt 50 ]; do sleep 0.2; _i=$((_i + 1)); done
	alive "$CVISOR_PID" && kill -KILL "$CVISOR_PID" 2>/dev/null
	wait "$CVISOR_PID" 2>/dev/null || true
	CVISOR_PID=
}

# run_vm TIMEOUT LOG ARGS...: run a VM to completion; sets RC. Fails the test (with the
# console) if it does not finish in TIMEOUT seconds.
run_vm() {
	_t=$1
	shift
	start_vm "$@"
	wait_vm "$_t" || { show_console "$1"; fail "the VM did not finish within $_t s"; }
}

# expect_rc WANT LOG: fail (showing the console) unless RC is WANT.
expect_rc() {
	[ "$RC" = "$1" ] || { show_console "$2"; fail "cvisor exited $RC, expected $1"; }
	check "cvisor exited $RC"
}

# Stop a VM the test left running, whatever way the test ends.
trap 'stop_vm' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- driving the guest's shell over the serial console ---------------------------
# shell_start LOG ARGS...: boot mode=shell (add it to your --cmdline) with stdin a FIFO
# held open on fd 3, and wait for the prompt.
shell_start() {
	_slog=$1
	rm -f "$TMPDIR/stdin.$$"
	mkfifo "$TMPDIR/stdin.$$"
	VM_STDIN=$TMPDIR/stdin.$$
	start_vm "$@"
	exec 3>"$TMPDIR/stdin.$$"
	wait_for "$_slog" 'cvisor-guest# ' 200 || fail "no shell prompt"
	echo 0 >"$TMPDIR/shell.n"
}

# shell_run CMD [TIMEOUT]: type CMD; wait until it finished; its output (between
# markers) goes to stdout. Fails the test (with the console) on timeout.
# (The command counter lives in a file: shell_run usually runs in a $(...) subshell.)
shell_run() {
	_cmd=$1
	case $_cmd in *'&') _cmd="$_cmd true" ;; esac # "cmd &; next" is a syntax error
	SHELL_N=$(($(cat "$TMPDIR/shell.n") + 1))
	echo "$SHELL_N" >"$TMPDIR/shell.n"
	# The markers are split by quotes in what is typed, so the terminal's echo of
	# the command line can never look like the markers the command prints.
	# (An extra newline before the end marker, in case the output lacks one;
	# the empty line it leaves otherwise is dropped again.)
	printf 'echo @@BEG""IN-%s@@; %s; _rc=$?; echo; echo "@@E""ND-%s rc=$_rc@@"\n' \
		"$SHELL_N" "$_cmd" "$SHELL_N" >&3
	wait_for "$_slog" "^@@END-$SHELL_N rc=" "${2:-60}" || fail "'$1' did not finish"
	tr -d '\r' <"$_slog" | awk -v b="@@BEGIN-$SHELL_N@@" -v e="@@END-$SHELL_N rc=" '
		index($0, e) == 1 { if (n && out[n] == "") n--; for (i = 1; i <= n; i++) print out[i]; exit }
		go { out[++n] = $0 }
		$0 == b { go = 1 }'
}

# shell_rc: exit status of the last shell_run command.
shell_rc() { tr -d '\r' <"$_slog" | grep -o "^@@END-$(cat "$TMPDIR/shell.n") rc=[0-9]*" | tail -n1 | sed 's/.*rc=//'; }

# shell_poweroff: power the guest off and expect cvisor to exit 0.
shell_poweroff() {
	printf 'poweroff -f\n' >&3
	wait_vm 60 || { show_console "$_slog"; fail "cvisor did not exit after poweroff"; }
	exec 3>&-
	expect_rc 0 "$_slog"
}
