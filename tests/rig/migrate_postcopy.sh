#!/bin/sh
# Post-copy live migration over loopback: a guest keeping 32 MiB of random data in RAM,
# ticking every second with its checksum while a loop keeps dirtying 16 MiB, moves with
# "postcopy": the destination runs after one pass and fetches missing pages on fault
# (userfaultfd) while the rest is pushed; it ticks on with the same checksum, its
# GET /v1/vm shows the faults served, the source exits 0. Before the switch, a
# destination that refuses (another memory size) or is killed leaves the source running.
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
disk=$TMPDIR/disk.img
cp "$DISK_EXT4" "$disk"
api=$TMPDIR/api.sock
log=$TMPDIR/src.log
ctl() { "$CVISOR" ctl --api-socket "$api" "$@"; }
mig_state() { ctl info 2>/dev/null | tr -d ' \n' | grep -o '"migration":{"state":"[a-z-]*"' | cut -d'"' -f6; }
mig_error() { ctl info 2>/dev/null | tr -d '\n' | grep -o '"error": *"[^"]*"' | head -n1; }
ms_now() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --disk "path=$disk" \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"
out=$(shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && dd if=/dev/urandom of=/dev/shm/blob bs=1M count=32 2>/dev/null && md5sum </dev/shm/blob | cut -c1-32" 120)
sum0=$(echo "$out" | grep -o "^[0-9a-f]\{32\}$" | tail -n1)
[ ${#sum0} = 32 ] || { show_console "$log"; fail "guest set-up failed"; }
shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i \$(md5sum </dev/shm/blob | cut -c1-32); sleep 1; done) &" >/dev/null
wait_for "$log" "TICK 2 " 60 || fail "no ticks"
src_pid=$CVISOR_PID
check "source ticking, data md5 $sum0"

wait_done() { # wait while the migration is active
	_i=0
	while [ "$(mig_state)" = active ] && [ $_i -lt 300 ]; do sleep 0.2; _i=$((_i + 1)); done
}
still_ticking() {
	alive "$src_pid" || { show_console "$log"; fail "the source died: $1"; }
	_n=$(count_of "$log" "^TICK")
	wait_for "$log" "TICK $((_n + 1)) " 30 || fail "the source stopped ticking: $1"
}

# 1. a destination that refuses before the switch (another memory size): the source goes on
"$CVISOR" run --incoming tcp:127.0.0.1:7101 --memory 512M --serial none >"$TMPDIR/d0.log" 2>&1 &
d0=$!
sleep 1
ctl migrate tcp:127.0.0.1:7101 --postcopy >/dev/null || fail "migrate request refused"
wait_done
st=$(mig_state)
drc=0; wait $d0 || drc=$?
[ "$st" = failed ] || fail "a refused post-copy migration ends '$st'"
[ "$drc" != 0 ] || fail "the refusing destination exited 0"
still_ticking "after a refusing destination"
check "destination refused (exit $drc, $(tail -n1 "$TMPDIR/d0.log" | cut -c1-100)): source runs on; $(mig_error)"

# 2. a destination killed mid pre-copy pass, before the switch: the source goes on
"$CVISOR" run --incoming tcp:127.0.0.1:7102 --serial none >"$TMPDIR/d1.log" 2>&1 &
d1=$!
sleep 1
kill -STOP $d1 # frozen, it stops reading: the source is mid-pass when it dies
ctl migrate tcp:127.0.0.1:7102 --postcopy >/dev/null || fail "migrate request refused"
sleep 1
kill -9 $d1 2>/dev/null || true
wait $d1 2>/dev/null || true
wait_done
st=$(mig_state)
[ "$st" = failed ] || fail "a post-copy migration to a killed destination ends '$st'"
still_ticking "after a killed destination"
check "destination killed before the switch: source runs on; $(mig_error)"

# 3. post-copy with memory being dirtied all along
shell_run "(while :; do dd if=/dev/urandom of=/dev/shm/churn bs=1M count=16 conv=notrunc 2>/dev/null; done) &" >/dev/null
dlog=$TMPDIR/dst.log
api2=$TMPDIR/api2.sock
rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$CVISOR" run --verbose --incoming tcp:127.0.0.1:7103 --api-socket "$api2" <"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
sleep 1
t0=$(ms_now)
ctl migrate tcp:127.0.0.1:7103 --postcopy >/dev/null || fail "migrate request refused"
wait_for "$dlog" "postcopy: serving faults" 120 || { show_console "$log"; fail "no post-copy switch-over"; }
t_sw=$(ms_now)
i=0
while alive "$src_pid" && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" && { show_console "$log"; ctl info; fail "the source still runs 120 s after migrate"; }
t_end=$(ms_now)
RC=0; wait "$src_pid" || RC=$?
CVISOR_PID=
[ "$RC" = 0 ] || { show_console "$log"; show_console "$dlog"; fail "the source exited $RC after post-copy"; }
summary=$(tr -d '\r' <"$log" | grep -o 'migrated to.*post-copy.*' | tail -n1)
down=$(tr -d '\r' <"$log" | grep -o 'after [0-9]* ms downtime' | tail -n1)
check "source exited 0: request to switch-over $((t_sw - t0)) ms, to source exit $((t_end - t0)) ms ($down)"
check "source: $summary"
last=$(tr -d '\r' <"$log" | grep -o '^TICK [0-9]*' | tail -n1 | cut -d' ' -f2)
wait_for "$dlog" "TICK $((last + 2)) " 60 || fail "the destination does not tick on"
sums=$(tr -d '\r' <"$dlog" | grep '^TICK' | awk '{ print $3 }' | sort -u)
[ "$sums" = "$sum0" ] || { show_console "$dlog"; fail "checksums on the destination: $sums (want $sum0)"; }
first=$(tr -d '\r' <"$dlog" | grep -o '^TICK [0-9]*' | head -n1 | cut -d' ' -f2)
check "destination goes on: last tick on the source $last, first on the destination $first, same checksum"
info=$("$CVISOR" ctl --api-socket "$api2" info | tr -d ' \n')
pcinfo=$(echo "$info" | grep -o '"incoming_postcopy":{[^}]*}') || fail "no incoming_postcopy in GET /v1/vm: $info"
faults=$(echo "$pcinfo" | grep -o '"faults":[0-9]*' | cut -d: -f2)
remaining=$(echo "$pcinfo" | grep -o '"remaining_pages":[0-9]*' | cut -d: -f2)
pst=$(echo "$pcinfo" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4)
[ "${faults:-0}" -gt 0 ] || fail "the destination served no faults: $pcinfo"
[ "$remaining" = 0 ] && [ "$pst" = completed ] || fail "pages still owed on the destination: $pcinfo"
check "destination GET /v1/vm: $pcinfo"
check "destination: $(tr -d '\r' <"$dlog" | grep -o 'postcopy: all.*' | tail -n1)"
printf 'echo written-after-migration >/mnt/m && sync && cat /mnt/m\n' >&4
wait_for "$dlog" "^written-after-migration" 60 || fail "the disk is not writable on the destination"
check "disk writable on the destination"
printf 'poweroff -f\n' >&4
i=0
while alive $dst && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
drc=0; wait $dst || drc=$?
exec 4>&-
[ "$drc" = 0 ] || { show_console "$dlog"; fail "destination exited $drc"; }
check "destination powered off with exit 0"
