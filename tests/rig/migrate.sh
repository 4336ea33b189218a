#!/bin/sh
# Live migration between two cvisor processes over loopback: a guest keeping 32 MiB of
# random data in RAM and ticking every second (with a disk) moves to a new process:
# the counter goes on with the same checksum, the disk stays writable, the source
# exits 0. A cancelled migration and a killed destination leave the source running;
# a destination that refuses the guest hands the disk lock back.
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
disk=$TMPDIR/disk.img
cp "$DISK_EXT4" "$disk"
api=$TMPDIR/api.sock
log=$TMPDIR/src.log
ctl() { "$CVISOR" ctl --api-socket "$api" "$@"; }
mig_state() { ctl info 2>/dev/null | tr -d ' \n' | grep -o '"migration":{"state":"[a-z]*"' | cut -d'"' -f6; }

start_ticking_guest "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --disk "path=$disk" \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"

# 1. a destination that is killed mid-way: the source goes on
"$CVISOR" run --incoming tcp:127.0.0.1:7001 --serial none >"$TMPDIR/d0.log" 2>&1 &
d0=$!
sleep 1
# frozen, the destination stops reading: the source is mid-transfer when it dies
kill -STOP $d0
ctl migrate tcp:127.0.0.1:7001 >/dev/null || fail "migrate request refused"
sleep 1
kill -9 $d0 2>/dev/null || true
wait $d0 2>/dev/null || true
i=0
while [ "$(mig_state)" = active ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" || { show_console "$log"; fail "the source died with its destination"; }
n=$(last_tick "$log")
wait_tick "$log" $((n + 1)) 30 || fail "the source stopped ticking after a killed destination"
check "destination killed mid-migration: source still running (migration: $(mig_state))"

# 2. a cancelled migration: the source goes on, the destination exits with an error
"$CVISOR" run --incoming tcp:127.0.0.1:7002 --serial none >"$TMPDIR/d1.log" 2>&1 &
d1=$!
sleep 1
shell_run "(while :; do dd if=/dev/urandom of=/dev/shm/churn bs=1M count=16 conv=notrunc 2>/dev/null; done) &" >/dev/null
kill -STOP $d1 # a stalled destination: the migration cannot finish before the cancel
ctl migrate tcp:127.0.0.1:7002 >/dev/null || fail "migrate request refused"
sleep 0.5
ctl migrate-cancel >/dev/null 2>&1 || "$CVISOR" ctl --api-socket "$api" migrate cancel >/dev/null 2>&1 || true
i=0
while [ "$(mig_state)" = active ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
st=$(mig_state)
kill -CONT $d1
i=0
while alive $d1 && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
drc=0; wait $d1 || drc=$?
alive "$src_pid" || { show_console "$log"; fail "the source died on cancel"; }
[ "$drc" != 0 ] || fail "the cancelled destination exited 0"
n=$(last_tick "$log")
wait_tick "$log" $((n + 1)) 30 || fail "the source stopped ticking after cancel"
check "cancelled migration (state $st): source runs on, destination exited $drc: $(tail -n1 "$TMPDIR/d1.log")"
shell_run "kill %2 2>/dev/null; true" >/dev/null

# 3. a destination that refuses the guest after it took the image lock (its
# device list differs: an extra NIC): it lets go before it answers, the source
# takes the lock back and runs on, and a second writer of the disk is turned away
tunctl -t tapr >/dev/null || fail "tunctl -t tapr failed (is the tun module loaded?)"
"$CVISOR" run --incoming tcp:127.0.0.1:7004 --net tap=tapr --serial none >"$TMPDIR/d2.log" 2>&1 &
d2=$!
sleep 1
ctl migrate tcp:127.0.0.1:7004 >/dev/null || fail "migrate request refused"
migration_end 300 $d2
[ "$st" = failed ] && [ "$drc" != 0 ] || { cat "$TMPDIR/d2.log"; fail "refusing destination: state $st, exit $drc"; }
grep -q 'the destination refused' "$log" || { show_console "$log"; fail "the source did not report the refusal"; }
! grep -q 'cannot take the image lock back' "$log" || { show_console "$log"; fail "the source lost its image lock"; }
RC=0
timeout 30 "$CVISOR" run --kernel "$KERNEL" --memory 128M --disk "path=$disk" --serial none \
	--cmdline "console=ttyS0 mode=poweroff" >/dev/null 2>"$TMPDIR/second.err" || RC=$?
[ "$RC" = 2 ] && grep -q -i 'lock' "$TMPDIR/second.err" ||
	{ cat "$TMPDIR/second.err"; fail "a second writer of the disk: exit $RC"; }
out=$(shell_run "echo after-refusal >/mnt/refused && sync && cat /mnt/refused")
[ "$out" = after-refusal ] || { show_console "$log"; fail "disk not writable after the refusal: $out"; }
n=$(last_tick "$log")
wait_tick "$log" $((n + 1)) 30 || fail "the source stopped ticking after the refusal"
check "refused after taking the lock ($(grep -o 'the destination refused: .*' "$log" | head -n1 | cut -c1-90)): source runs on, holds its disk lock (second writer: $(head -n1 "$TMPDIR/second.err" | cut -c1-80)), disk writable"
tunctl -d tapr >/dev/null 2>&1 || true

# 4. the real thing
dlog=$TMPDIR/dst.log
api2=$TMPDIR/api2.sock
rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$CVISOR" run --verbose --incoming tcp:127.0.0.1:7003 --api-socket "$api2" <"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
sleep 1
t0=$(date +%s)
ctl migrate tcp:127.0.0.1:7003 >/dev/null || fail "migrate request refused"
i=0
while alive "$src_pid" && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" && { show_console "$log"; ctl info; fail "the source still runs 120 s after migrate"; }
RC=0; wait "$src_pid" || RC=$?
CVISOR_PID=
[ "$RC" = 0 ] || { show_console "$log"; fail "the source exited $RC after migrating"; }
check "source exited 0 after $(($(date +%s) - t0)) s: $(grep -o 'migrated to.*' "$log" | tail -n1)"
last=$(last_tick "$log")
wait_tick "$dlog" $((last + 2)) 60 || { show_console "$log"; fail "the destination does not tick on (source console above it)"; }
sums=$(tick_sums "$dlog")
[ "$sums" = "$sum0" ] || { show_console "$dlog"; fail "checksums on the destination: $sums (want $sum0)"; }
first=$(first_tick "$dlog")
check "destination goes on: last tick on the source $last, first on the destination $first, same checksum"
printf 'echo written-after-migration >/mnt/m && sync && cat /mnt/m\n' >&4
wait_for "$dlog" "^written-after-migration" 60 || fail "the disk is not writable on the destination"
check "disk writable on the destination"
"$CVISOR" ctl --api-socket "$api2" info | tr -d '\n' | grep -q '"state": *"running"' || fail "destination API"
printf 'poweroff -f\n' >&4
i=0
while alive $dst && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
drc=0; wait $dst || drc=$?
exec 4>&-
[ "$drc" = 0 ] || { show_console "$dlog"; fail "destination exited $drc"; }
check "destination powered off with exit 0"
