#!/bin/sh
# The per-VM API against a booted guest: GET /v1/vm says running or paused; pause
# stops the guest's clock ticks and resume restarts them; metrics are Prometheus
# text; each class of bad request (malformed JSON, unknown field, wrong type, body
# over the limit, unknown route, wrong method, resume while running) gets its 4xx
# while the guest ticks on; the balloon target is set; shutdown presses the ACPI
# power button, the guest's acpid powers off, cvisor exits 0 and the socket is gone.
# Run it in the rig: tools/rig/rig.sh tests/api/api_vm.sh
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/../rig/lib.sh}"
api=$TMPDIR/api.sock
log=$TMPDIR/console.log
ctl() { "$CVISOR" ctl --api-socket "$api" "$@"; }
ticks() { tr -d '\r' <"$log" | grep -c '^TICK [0-9]* \.$' || true; }

shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --cpus 2 --balloon \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"
[ -S "$api" ] || fail "no socket at $api"
out=$(ctl info 2>&1) || fail "info: $out"
echo "$out" | grep -q '"state": "running"' || fail "GET /v1/vm does not say running: $out"
check "GET /v1/vm: running"

shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i .; sleep 1; done) &" >/dev/null
wait_for "$log" "^TICK 3 \." 120 || fail "no ticks"

# pause: no tick for 5 s (one may already be on its way out); resume: ticks again
ctl pause >/dev/null || fail "pause"
ctl info | grep -q '"state": "paused"' || fail "GET /v1/vm does not say paused"
n1=$(ticks)
sleep 5
n2=$(ticks)
[ $((n2 - n1)) -le 1 ] || fail "the guest ticked while paused: $n1 -> $n2"
out=$(ctl pause 2>&1) && fail "pause while paused was accepted"
echo "$out" | grep -q "already paused" || fail "pause while paused: $out"
ctl resume >/dev/null || fail "resume"
sleep 5
n3=$(ticks)
[ "$n3" -ge $((n2 + 2)) ] || fail "no ticks after resume: $n2 -> $n3"
check "paused: ticks $n1 -> $n2 in 5 s; resumed: $n3"

# metrics: every line a comment or name{label="value",...} value
m=$(ctl metrics) || fail "metrics"
echo "$m" | grep -q '^# TYPE cvisor_vcpu_exits_total counter$' || fail "no exit counters: $m"
echo "$m" | grep -q '^cvisor_vm_paused 0$' || fail "cvisor_vm_paused is not 0: $m"
bad=$(echo "$m" | grep -v '^# \(HELP\|TYPE\) ' |
	grep -v -E '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? [-+]?([0-9.eE+-]+|Inf|NaN)$' ||
	true)
[ -z "$bad" ] || fail "metrics lines that are not Prometheus text: $bad"
check "metrics: $(echo "$m" | grep -c -v '^#') samples"

# bad requests: status and an "error", the VM unharmed
big=$(head -c 70000 /dev/zero | tr '\0' ' ')
expect() { # expect STATUS METHOD PATH [BODY]
	_want=$1
	shift
	_out=$(ctl request "$@" 2>&1) && fail "$*: accepted"
	echo "$_out" | head -n1 | grep -q "^HTTP $_want$" || fail "$1 $2: want $_want, got: $_out"
	echo "$_out" | grep -q '"error"' || fail "$1 $2: no error member: $_out"
}
n4=$(ticks)
expect 400 PUT /v1/vm/balloon '{"target_mib": 1'
expect 400 PUT /v1/vm/balloon '{"target_mib": 1, "extra": 2}'
expect 400 PUT /v1/vm/balloon '{"target_mib": "1"}'
expect 400 PUT /v1/vm/balloon '{"target_mib": -1}'
expect 400 PUT /v1/vm/pause '[]'
expect 413 PUT /v1/vm/balloon "{\"target_mib\": 1$big}"
expect 404 GET /v1/nothing
expect 405 DELETE /v1/vm
expect 409 PUT /v1/vm/resume
ctl info | grep -q '"state": "running"' || fail "not running after the bad requests"
sleep 3
[ "$(ticks)" -ge $((n4 + 2)) ] || fail "the guest stopped ticking after the bad requests"
check "bad requests: 400 400 400 400 400 413 404 405 409; the guest ticks on"

# balloon
ctl balloon 64 >/dev/null || fail "balloon 64"
ctl info | tr -d ' \n' | grep -q '"type":"balloon","id":"0","target_mib":64' ||
	fail "balloon target not in GET /v1/vm: $(ctl info)"
ctl balloon 0 >/dev/null || fail "balloon 0"
out=$(ctl balloon 100000 2>&1) && fail "balloon above the memory size was accepted"
check "balloon: target set and reset; too large refused: $out"

# shutdown: the ACPI power button, the guest's acpid powers off. (busybox acpid exits
# at once when it cannot open its log, /var/log/acpid.log by default, which the test
# initramfs lacks: start it here with -l /dev/null if the guest's init could not.)
out=$(shell_run "pidof acpid >/dev/null || acpid -c /etc/acpi -l /dev/null; sleep 1; pidof acpid")
echo "$out" | grep -q '[0-9]' || fail "no acpid in the guest: $out"
ctl shutdown >/dev/null || fail "shutdown"
wait_vm 120 || { show_console "$log"; fail "the guest did not power off after the power button"; }
exec 3>&-
[ "$RC" = 0 ] || fail "cvisor exited $RC after the guest powered off"
[ ! -e "$api" ] || fail "the socket file is still there"
check "shutdown: guest powered off, cvisor exit 0, socket removed"
