#!/bin/sh
# Control-plane benchmark (rig): per-VM API latency of GET /v1/vm (median, p99 over
# 2000 requests on one connection), time for cvisord to create and start 20 VMs
# (until all 20 are running processes), and cvisord's RSS with 20 VMs.
# No peer: QEMU has no equivalent of either (its QMP over a socket is the nearest).
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${CVISORD:?}"
api=$TMPDIR/api.sock
log=$TMPDIR/c.log
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --api-socket "$api" \
	--cmdline "console=ttyS0 mode=shell"
lat=$(apilat "$api" /v1/vm 2000) || fail "apilat"
shell_poweroff
echo "  GET /v1/vm: $lat"

state=$TMPDIR/state
export CVISORD_SOCKET=$state/cvisord.sock
mkdir -p "$state"
"$CVISORD" --state-dir "$state" >"$TMPDIR/d.log" 2>&1 &
dpid=$!
i=0
while ! "$CVISOR" vm list >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
t0=$(awk '{ print $1 }' /proc/uptime)
n=0
while [ $n -lt 20 ]; do
	n=$((n + 1))
	"$CVISOR" vm create "b$n" --kernel "$KERNEL" --initrd "$INITRD" --memory 128M \
		--cmdline "console=ttyS0 mode=shell" >/dev/null || fail "create b$n"
	"$CVISOR" vm start "b$n" >/dev/null || fail "start b$n"
done
i=0
while [ "$("$CVISOR" vm list | awk '$2 == "running"' | wc -l)" -lt 20 ] && [ $i -lt 300 ]; do
	sleep 0.1
	i=$((i + 1))
done
t1=$(awk '{ print $1 }' /proc/uptime)
running=$("$CVISOR" vm list | awk '$2 == "running"' | wc -l)
rss=$(awk '/^VmRSS/ { print $2 }' /proc/$dpid/status)
ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
echo "  cvisord: $running VMs created and started in $ms ms; daemon RSS $rss KiB"
n=0
while [ $n -lt 20 ]; do n=$((n + 1)); "$CVISOR" vm destroy "b$n" >/dev/null 2>&1 || true; done
kill "$dpid" 2>/dev/null || true
wait "$dpid" 2>/dev/null || true
echo
echo "BENCH control (rig figures)"
echo "BENCH api GET /v1/vm latency: $lat"
echo "BENCH cvisord create+start 20 VMs: ${ms} ms ($running running)"
echo "BENCH cvisord RSS with 20 VMs: ${rss} KiB"
[ "$running" = 20 ] || fail "only $running of 20 VMs running"
