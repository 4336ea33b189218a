#!/bin/sh
# The per-VM API against a booted stock kernel: state, pause freezes the guest (no
# ticks, guest clock stopped), resume restarts it, metrics parse as Prometheus text,
# bad requests get 4xx and the VM runs on, a disk rate limit holds within 10 % and can
# be changed live, and shutdown through the ACPI power button ends the VM with 0.
# timeout: 600
# rig-cost: 30
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
api=$TMPDIR/api.sock
log=$TMPDIR/c.log
disk=$TMPDIR/d.img
dd if=/dev/zero of="$disk" bs=1M count=64 2>/dev/null
ctl() { "$CVISOR" ctl --api-socket "$api" "$@"; }
req() { "$CVISOR" ctl --api-socket "$api" request "$@" 2>&1 | head -n1; }

shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M \
	--disk "path=$disk,bps=2000000" --api-socket "$api" --cmdline "console=ttyS0 mode=shell"
ctl info | tr -d '\n ' | grep -q '"state":"running"' || fail "info does not say running"
check "GET /v1/vm: running"

shell_run "(while :; do echo TICK \$(cut -d' ' -f1 /proc/uptime); sleep 0.5; done) &" >/dev/null
wait_for "$log" "^TICK" 30 || fail "no ticks"
sleep 1
ctl pause >/dev/null || fail "pause refused"
ctl info | tr -d '\n ' | grep -q '"state":"paused"' || fail "info does not say paused"
n1=$(count_of "$log" "^TICK")
sleep 4
n2=$(count_of "$log" "^TICK")
[ "$n2" -le $((n1 + 1)) ] || fail "the guest ticked while paused ($n1 -> $n2)"
check "paused: no guest ticks for 4 s ($n1 -> $n2)"
[ "$(req PUT /v1/vm/pause)" = "HTTP 409" ] || fail "pause while paused is not 409"
ctl resume >/dev/null || fail "resume refused"
wait_for "$log" "^TICK" 10 >/dev/null
i=0
while [ "$(count_of "$log" "^TICK")" -le "$n2" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
[ "$(count_of "$log" "^TICK")" -gt "$n2" ] || fail "no ticks after resume"
# the guest clock stood still while paused: consecutive uptimes differ by < 2 s
gap=$(tr -d '\r' <"$log" | grep '^TICK' | awk 'NR > 1 { d = $2 - p; if (d > m) m = d } { p = $2 } END { printf "%.1f", m }')
awk -v g="$gap" 'BEGIN { exit !(g < 2.0) }' || fail "the guest clock jumped by $gap s over the pause"
check "resumed: ticks again; largest guest-clock step between ticks ${gap} s (pause was 4 s)"
[ "$(req PUT /v1/vm/resume)" = "HTTP 409" ] || fail "resume while running is not 409"
shell_run "kill %1; true" >/dev/null

m=$(ctl metrics) || fail "metrics"
echo "$m" | grep -q '^cvisor_vcpu_exits_total{' || fail "no exit counters in metrics"
bad=$(echo "$m" | grep -v '^#' | grep -v -E '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? -?[0-9.e+-]+$' | head -n3)
[ -z "$bad" ] || fail "lines that are not Prometheus samples: $bad"
check "metrics: $(echo "$m" | grep -vc '^#') samples, all well-formed"

for r in "GET /v1/nope" "DELETE /v1/vm" "PUT /v1/vm/balloon {bad json" "PUT /v1/vm/balloon {\"target_mib\":\"x\"}" \
	"PUT /v1/vm/balloon {\"nope\":1}" "PATCH /v1/vm/disks/9 {\"bps\":1}"; do
	set -- $r
	st=$(req "$1" "$2" "${3:-}")
	case $st in "HTTP 4"*) ;; *) fail "$r answered '$st', not 4xx" ;; esac
	check "$r -> $st"
done
ctl info >/dev/null || fail "the VM stopped answering after bad requests"
alive "$CVISOR_PID" || fail "the VM died after bad requests"

# disk rate limit: 2 MB/s set at start; 16 MiB of direct writes take ~8 s
t=$(shell_run "s=\$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of=/dev/vda bs=256k count=64 oflag=direct 2>/dev/null; e=\$(cut -d' ' -f1 /proc/uptime); echo \$s \$e | awk '{ printf \"%.2f\", \$2 - \$1 }'" 120 | tail -n1)
rate=$(awk -v t="$t" 'BEGIN { printf "%.0f", 16777216 / t }')
awk -v r="$rate" 'BEGIN { exit !(r > 2000000 * 0.9 && r < 2000000 * 1.1) }' ||
	fail "disk at bps=2000000 wrote at $rate B/s ($t s)"
check "disk limit 2 MB/s: $rate B/s over $t s (within 10 %)"
ctl disk-limit 0 bps=4000000 >/dev/null || fail "disk-limit refused"
t=$(shell_run "s=\$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of=/dev/vda bs=256k count=64 oflag=direct 2>/dev/null; e=\$(cut -d' ' -f1 /proc/uptime); echo \$s \$e | awk '{ printf \"%.2f\", \$2 - \$1 }'" 120 | tail -n1)
rate=$(awk -v t="$t" 'BEGIN { printf "%.0f", 16777216 / t }')
awk -v r="$rate" 'BEGIN { exit !(r > 4000000 * 0.9 && r < 4000000 * 1.1) }' ||
	fail "disk after PATCH bps=4000000 wrote at $rate B/s ($t s)"
check "changed live to 4 MB/s: $rate B/s"

ctl shutdown >/dev/null || fail "shutdown refused"
wait_vm 60 || fail "the guest did not power off after the power button"
exec 3>&-
expect_rc 0 "$log"
check "shutdown via the ACPI power button: exit 0"
