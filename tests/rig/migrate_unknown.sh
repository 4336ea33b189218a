#!/bin/sh
# Live migration whose ending the source cannot know: the whole state and DONE
# reach the destination, which takes over, but its answer is lost (a relay,
# tests/tools/migproxy, swallows it and cuts the source's connection). The source
# must not resume the guest on its own: it stays paused, says so in one line,
# finds its disk's image lock held by the destination and then refuses a resume;
# the destination runs the guest on with the same data and a writable disk.
# timeout: 600
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
command -v migproxy >/dev/null || fail "migproxy (tests/tools) is not in PATH"
disk=$TMPDIR/disk.img
cp "$DISK_EXT4" "$disk"
api=$TMPDIR/api.sock
log=$TMPDIR/src.log
ctl() { "$CVISOR" ctl --api-socket "$api" "$@"; }
info() { ctl info 2>/dev/null | tr -d ' \n'; }
mig_state() { info | grep -o '"migration":{"state":"[a-z]*"' | cut -d'"' -f6; }
proxy=
dst=

start_ticking_guest "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --disk "path=$disk" \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"

dlog=$TMPDIR/dst.log
api2=$TMPDIR/api2.sock
rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$CVISOR" run --verbose --incoming tcp:127.0.0.1:7203 --api-socket "$api2" <"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
migproxy 7202 7203 lose-answer >"$TMPDIR/proxy.log" 2>&1 &
proxy=$!
cleanup() {
	for p in $proxy $dst; do kill -KILL "$p" 2>/dev/null || true; done
	stop_vm
}
trap cleanup EXIT
wait_for "$TMPDIR/proxy.log" "listening" 20 || fail "migproxy did not start"
sleep 1
ctl migrate tcp:127.0.0.1:7202 >/dev/null || fail "migrate request refused"
i=0
while [ "$(mig_state)" = active ] && [ $i -lt 900 ]; do sleep 0.2; i=$((i + 1)); done
st=$(mig_state)
wait_for "$TMPDIR/proxy.log" "swallowed" 10 || { cat "$TMPDIR/proxy.log"; show_console "$log"; fail "the relay saw no answer to DONE"; }
alive "$src_pid" || { show_console "$log"; fail "the source exited"; }
[ "$st" = failed ] || { show_console "$log"; fail "migration state '$st', expected failed"; }
check "relay: $(tr '\n' ';' <"$TMPDIR/proxy.log")"

# the source: paused, one line that says why, the lock found taken
n=$(tr -d '\r' <"$log" | grep -c 'after the whole state went out: the destination may be running the guest' || true)
[ "$n" = 1 ] || { show_console "$log"; fail "$n lines about the unclear ending on the source (want 1)"; }
info | grep -q '"state":"paused"' || { info; fail "the source's VM is not paused"; }
ctl info 2>/dev/null | grep -q 'the destination may be running the guest' || { info; fail "GET /v1/vm does not say why"; }
grep -q "disk 0: the destination holds the image lock" "$log" ||
	{ show_console "$log"; fail "the source did not find its disk lock taken"; }
check "source paused: $(tr -d '\r' <"$log" | grep -o 'migration: .*after the whole state went out' | head -n1 | cut -c1-90)..."

# the destination took over: same data, ticking on, disk writable
last=$(last_tick "$log")
wait_tick "$dlog" $((last + 2)) 60 || { show_console "$log"; fail "the destination does not tick on (source console above it)"; }
sums=$(tick_sums "$dlog")
[ "$sums" = "$sum0" ] || { show_console "$dlog"; fail "checksums on the destination: $sums (want $sum0)"; }
printf 'echo written-on-destination >/mnt/u && sync && cat /mnt/u\n' >&4
wait_for "$dlog" "^written-on-destination" 60 || fail "the disk is not writable on the destination"
check "destination runs the guest: same checksum, ticking on from $last, disk writable"

# the source never ran meanwhile, and will not
[ "$(last_tick "$log")" = "$last" ] || { show_console "$log"; fail "the source ticked after the switch-over"; }
out=$(ctl resume 2>&1) && { echo "$out"; fail "the source resumed a guest that runs on the destination"; }
echo "$out" | grep -q "runs on the destination" || fail "resume refused without the reason: $out"
sleep 2
[ "$(last_tick "$log")" = "$last" ] || { show_console "$log"; fail "the source ticks after a refused resume"; }
check "source: resume refused ($(echo "$out" | head -n1 | cut -c1-80))"
ctl stop >/dev/null 2>&1 || true
wait_vm 30 || fail "the source did not stop"
check "source stopped (exit $RC)"

poweroff_dest
