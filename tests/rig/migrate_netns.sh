#!/bin/sh
# Live migration between two network namespaces, as between two hosts: each
# namespace has its own tap0 (same name, as on two hosts) and the migration
# stream goes over a veth pair. The guest keeps 32 MiB of random data in RAM,
# ticks every second with its checksum and keeps dirtying memory, with a disk
# and a NIC attached. Afterwards the destination ticks on with the same
# checksum, announced the guest's MAC on its tap (RARP), answers pings from its
# namespace and writes its disk; the source exits 0.
# timeout: 600
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
command -v rarpwait >/dev/null || fail "rarpwait (tests/tools) is not in PATH"
# iproute2's ip, by its path: busybox sh prefers its own applet for a bare `ip`
for IP in /sbin/ip /usr/sbin/ip /bin/ip /usr/bin/ip ""; do
	[ -x "$IP" ] && "$IP" netns help 2>&1 | grep -q 'ip netns add' && break
done
[ -n "$IP" ] || fail "no ip with netns support (iproute2 needed)"

NS1=cvmig-src NS2=cvmig-dst
MAC=52:54:00:99:00:02
disk=$TMPDIR/disk.img
cp "$DISK_EXT4" "$disk"
api=$TMPDIR/api.sock api2=$TMPDIR/api2.sock
log=$TMPDIR/src.log dlog=$TMPDIR/dst.log
dst= rarp=

cleanup() {
	for p in $dst $rarp ${CVISOR_PID:-}; do kill -9 "$p" 2>/dev/null || true; done
	"$IP" netns del $NS1 2>/dev/null || true
	"$IP" netns del $NS2 2>/dev/null || true
}
trap cleanup EXIT

# two "hosts": a veth between them, a tap0 with the same address in each
"$IP" netns add $NS1
"$IP" netns add $NS2
"$IP" link add cvm-a type veth peer name cvm-b
"$IP" link set cvm-a netns $NS1
"$IP" link set cvm-b netns $NS2
n=1
for ns in $NS1 $NS2; do
	"$IP" -n $ns link set lo up
	"$IP" -n $ns addr add 10.99.0.$n/24 dev "$("$IP" -n $ns -o link show type veth | cut -d: -f2 | cut -d@ -f1 | tr -d ' ')"
	"$IP" -n $ns link set "$("$IP" -n $ns -o link show type veth | cut -d: -f2 | cut -d@ -f1 | tr -d ' ')" up
	"$IP" netns exec $ns tunctl -t tap0 >/dev/null || fail "tunctl in $ns"
	"$IP" -n $ns addr add 10.0.9.1/24 dev tap0
	"$IP" -n $ns link set tap0 up
	n=$((n + 1))
done
"$IP" netns exec $NS1 ping -c 1 -w 10 10.99.0.2 >/dev/null || fail "the namespaces cannot reach each other"
check "namespaces $NS1 (10.99.0.1) and $NS2 (10.99.0.2) over a veth, tap0 in each"

VMM_CMD="$IP netns exec $NS1 $CVISOR run"
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --disk "path=$disk" \
	--net "tap=tap0,mac=$MAC" --api-socket "$api" --cmdline "console=ttyS0 mode=shell"
VMM_CMD=
src_pid=$CVISOR_PID
out=$(shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && "$IP" addr add 10.0.9.2/24 dev eth0 && "$IP" link set eth0 up && dd if=/dev/urandom of=/dev/shm/blob bs=1M count=32 2>/dev/null && md5sum </dev/shm/blob | cut -c1-32" 120)
sum0=$(echo "$out" | grep -o "^[0-9a-f]\{32\}$" | tail -n1)
[ ${#sum0} = 32 ] || { show_console "$log"; fail "guest set-up failed"; }
"$IP" netns exec $NS1 ping -c 2 -w 20 10.0.9.2 >/dev/null || { show_console "$log"; fail "$NS1 cannot ping the guest"; }
check "guest up in $NS1: pings answered, data md5 $sum0"
shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i \$(md5sum </dev/shm/blob | cut -c1-32); sleep 1; done) &" >/dev/null
shell_run "(while :; do dd if=/dev/urandom of=/dev/shm/churn bs=1M count=8 conv=notrunc 2>/dev/null; done) &" >/dev/null
wait_tick "$log" 2 60 || fail "no ticks"

rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$IP" netns exec $NS2 "$CVISOR" run --verbose --incoming tcp:10.99.0.2:7100 --api-socket "$api2" \
	<"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
"$IP" netns exec $NS2 rarpwait tap0 300 >"$TMPDIR/rarp.log" 2>&1 &
rarp=$!
wait_for "$TMPDIR/rarp.log" "listening" 20 || fail "rarpwait did not start"
i=0
while ! "$IP" netns exec $NS2 netstat -ltn 2>/dev/null | grep -q ':7100 ' && [ $i -lt 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
t0=$(date +%s)
"$CVISOR" ctl --api-socket "$api" migrate tcp:10.99.0.2:7100 >/dev/null || fail "migrate request refused"
i=0
while alive "$src_pid" && [ $i -lt 900 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" && { show_console "$log"; "$CVISOR" ctl --api-socket "$api" info; fail "the source still runs 180 s after migrate"; }
RC=0; wait "$src_pid" || RC=$?
CVISOR_PID=
[ "$RC" = 0 ] || { show_console "$log"; show_console "$dlog"; fail "the source exited $RC after migrating"; }
check "source exited 0 after $(($(date +%s) - t0)) s: $(grep -o 'migrated to.*' "$log" | tail -n1)"

last=$(last_tick "$log")
wait_tick "$dlog" $((last + 2)) 60 || { show_console "$log"; fail "the destination does not tick on (source console above it)"; }
sums=$(tick_sums "$dlog")
[ "$sums" = "$sum0" ] || { show_console "$dlog"; fail "checksums on the destination: $sums (want $sum0)"; }
check "destination in $NS2 goes on from tick $last with the same checksum"

wait $rarp || { cat "$TMPDIR/rarp.log"; fail "no RARP announcement on $NS2's tap0"; }
rarp=
grep -q "rarp from $MAC" "$TMPDIR/rarp.log" || { cat "$TMPDIR/rarp.log"; fail "RARP from the wrong MAC"; }
check "the destination announced the guest on its tap: $(grep 'rarp from' "$TMPDIR/rarp.log")"
"$IP" netns exec $NS2 ping -c 2 -w 20 10.0.9.2 >/dev/null || { show_console "$dlog"; fail "$NS2 cannot ping the migrated guest"; }
check "the migrated guest answers pings in $NS2"
printf 'echo written-after-migration >/mnt/m && sync && cat /mnt/m\n' >&4
wait_for "$dlog" "^written-after-migration" 60 || fail "the disk is not writable on the destination"
check "disk writable on the destination"
poweroff_dest
