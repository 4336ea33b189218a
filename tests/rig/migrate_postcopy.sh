#!/bin/sh
# Post-copy live migration over loopback: a guest keeping 32 MiB of random data in RAM,
# ticking every second with its checksum while a loop keeps dirtying 16 MiB, moves with
# "postcopy": the destination runs after one pass and fetches missing pages on fault
# (userfaultfd) while the rest is pushed; three more loops rewrite 60 MiB all along, so
# thousands of pages are owed and many faults served; it ticks on with the same
# checksum, its GET /v1/vm shows the faults served, the source exits 0. Before the
# switch, a destination that refuses (another memory size) or is killed leaves the
# source running. After the switch (background push slowed by max_bandwidth), a
# destination killed makes the source exit 1 with one line and never tick again, and a
# source killed makes the destination exit 1 with one line at once.
# timeout: 900
# rig-cost: 80
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

start_ticking_guest "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --disk "path=$disk" \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"

wait_done() { # wait while the migration is active
	_i=0
	while [ "$(mig_state)" = active ] && [ $_i -lt 300 ]; do sleep 0.2; _i=$((_i + 1)); done
}
still_ticking() {
	alive "$src_pid" || { show_console "$log"; fail "the source died: $1"; }
	_n=$(last_tick "$log")
	wait_tick "$log" $((_n + 1)) 30 || fail "the source stopped ticking: $1"
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

# heavy load: three loops rewriting 20 MiB each (copies of the blob, so pages are not
# zero) besides the tick loop; they go on on the destination, where what is still owed
# faults
heavy_load() {
	shell_run "for k in 1 2 3; do (while :; do dd if=/dev/shm/blob of=/dev/shm/heavy\$k bs=1M count=20 conv=notrunc 2>/dev/null; done) & done" >/dev/null
}

# 3. post-copy with memory being dirtied all along
shell_run "(while :; do dd if=/dev/urandom of=/dev/shm/churn bs=1M count=16 conv=notrunc 2>/dev/null; done) &" >/dev/null
heavy_load
dlog=$TMPDIR/dst.log
api2=$TMPDIR/api2.sock
rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$CVISOR" run --verbose --incoming tcp:127.0.0.1:7103 --api-socket "$api2" <"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
sleep 1
t0=$(ms_now)
# the cap slows the background push too: the guest touches owed pages before they come
ctl migrate tcp:127.0.0.1:7103 --postcopy --max-bandwidth 25 >/dev/null || fail "migrate request refused"
wait_for "$dlog" "postcopy: serving faults" 120 || { show_console "$log"; fail "no post-copy switch-over"; }
t_sw=$(ms_now)
# a SIGTERM to the source now must not kill the guest on the destination: the
# source finishes the push first (it says so), then exits 0
kill -TERM "$src_pid" 2>/dev/null || true
wait_for "$log" "post-copy is sending the guest's last pages" 20 ||
	fail "SIGTERM during the push: no word from the source"
i=0
while alive "$src_pid" && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" && { show_console "$log"; ctl info; fail "the source still runs 120 s after migrate"; }
t_end=$(ms_now)
RC=0; wait "$src_pid" || RC=$?
CVISOR_PID=
[ "$RC" = 0 ] || { show_console "$log"; show_console "$dlog"; fail "the source exited $RC after post-copy"; }
summary=$(tr -d '\r' <"$log" | grep -o 'migrated to.*post-copy.*' | tail -n1)
down=$(tr -d '\r' <"$log" | grep -o 'after [0-9]* ms downtime' | tail -n1)
check "source exited 0 (a SIGTERM during the push waited for it): request to switch-over $((t_sw - t0)) ms, to source exit $((t_end - t0)) ms ($down)"
check "source: $summary"
last=$(last_tick "$log")
wait_tick "$dlog" $((last + 2)) 60 || { show_console "$log"; fail "the destination does not tick on (source console above it)"; }
sums=$(tick_sums "$dlog")
[ "$sums" = "$sum0" ] || { show_console "$dlog"; fail "checksums on the destination: $sums (want $sum0)"; }
first=$(first_tick "$dlog")
check "destination goes on: last tick on the source $last, first on the destination $first, same checksum"
info=$("$CVISOR" ctl --api-socket "$api2" info | tr -d ' \n')
pcinfo=$(echo "$info" | grep -o '"incoming_postcopy":{[^}]*}') || fail "no incoming_postcopy in GET /v1/vm: $info"
faults=$(echo "$pcinfo" | grep -o '"faults":[0-9]*' | cut -d: -f2)
remaining=$(echo "$pcinfo" | grep -o '"remaining_pages":[0-9]*' | cut -d: -f2)
pst=$(echo "$pcinfo" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4)
owed=$(echo "$pcinfo" | grep -o '"owed_pages":[0-9]*' | cut -d: -f2)
requested=$(echo "$pcinfo" | grep -o '"pages_requested":[0-9]*' | cut -d: -f2)
check "destination: $owed pages owed at the switch, $faults faults, $requested pages requested"
[ "${owed:-0}" -ge 2000 ] || fail "only ${owed:-0} pages owed at the switch under heavy load: $pcinfo"
[ "${faults:-0}" -ge 50 ] && [ "${requested:-0}" -ge 20 ] ||
	fail "too few faults served under heavy load: $pcinfo"
# 25 MB/s with bursts of 100 ms: the owed pages take at least this long
all_ms=$(echo "$summary" | grep -o 'delivered [0-9]* ms' | cut -d' ' -f2)
need_ms=$(( (owed * 4096 - 2500000) / 25000 ))
[ "${all_ms:-0}" -ge "$need_ms" ] || fail "$owed owed pages went in ${all_ms:-?} ms: faster than the 25 MB/s cap"
check "background push kept to the cap: $owed pages in $all_ms ms (at least $need_ms ms at 25 MB/s)"
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

# 4./5. failures after the switch. A fresh guest with the heavy load, migrated with
# the background push capped at 20 MB/s so that the owed pages take seconds.
# fresh_source LOG API: boot, a 20 MiB blob, ticks, the heavy load.
fresh_source() {
	shell_start "$1" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --api-socket "$2" \
		--cmdline "console=ttyS0 mode=shell"
	shell_run "dd if=/dev/urandom of=/dev/shm/blob bs=1M count=20 2>/dev/null" 120 >/dev/null
	shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i; sleep 1; done) &" >/dev/null
	heavy_load
	wait_for "$1" "TICK 2" 60 || fail "no ticks on $1"
}
# start_switch SRC_API PORT DLOG: an incoming cvisor on PORT (pid in $inc), a capped
# post-copy migration to it, wait until it started the guest.
start_switch() {
	"$CVISOR" run --verbose --incoming "tcp:127.0.0.1:$2" --serial none >"$3" 2>&1 &
	inc=$!
	sleep 1
	"$CVISOR" ctl --api-socket "$1" migrate "tcp:127.0.0.1:$2" --postcopy --max-bandwidth 20 \
		>/dev/null || fail "migrate request refused"
	wait_for "$3" "migration received: the VM runs here now" 120 || fail "no post-copy switch-over"
}
# wait_exit PID SECONDS: wait for PID to end; its exit status in $xrc, seconds in $xs
wait_exit() {
	_t0=$(ms_now)
	_i=0
	while alive "$1" && [ $_i -lt $(($2 * 10)) ]; do sleep 0.1; _i=$((_i + 1)); done
	alive "$1" && return 1
	xs=$(( ($(ms_now) - _t0) / 100 ))
	xrc=0; wait "$1" || xrc=$?
}

# 4. the destination killed after it started the guest: the source exits 1, one line,
# no tick after the switch
log4=$TMPDIR/src4.log
fresh_source "$log4" "$TMPDIR/api4.sock"
src4=$CVISOR_PID
start_switch "$TMPDIR/api4.sock" 7104 "$TMPDIR/d4.log"
kill -9 $inc
wait $inc 2>/dev/null || true
grep -q 'postcopy: all' "$TMPDIR/d4.log" && fail "the destination had every page before the kill: the window was missed"
wait_exit "$src4" 60 || { show_console "$log4"; fail "the source still runs 60 s after its destination died"; }
CVISOR_PID=
[ "$xrc" != 0 ] || { show_console "$log4"; fail "the source exited 0 after its destination died"; }
n=$(count_of "$log4" "post-copy broke after the switch-over")
[ "$n" = 1 ] || { show_console "$log4"; fail "$n lines about the broken post-copy on the source (want 1)"; }
sw=$(tr -d '\r' <"$log4" | grep -n 'post-copy switch-over to' | head -n1 | cut -d: -f1)
[ -n "$sw" ] || { show_console "$log4"; fail "no switch-over line on the source"; }
late=$(tr -d '\r' <"$log4" | tail -n "+$sw" | grep -c '^TICK' || true)
[ "$late" = 0 ] || { show_console "$log4"; fail "the source ticked $late times after the switch-over"; }
before=$(tr -d '\r' <"$log4" | head -n "$sw" | grep -c '^TICK' || true)
said=$(tr -d '\r' <"$log4" | tail -n "+$((sw + 1))" | grep '^cvisor: ' | grep -v '^cvisor: debug: ' || true)
[ "$(echo "$said" | wc -l)" = 1 ] || { show_console "$log4"; fail "the source said more than one line after the switch: $said"; }
check "destination killed after the switch: source exit $xrc after $((xs / 10)).$((xs % 10)) s, $before ticks before the switch, none after"
check "source: $(tr -d '\r' <"$log4" | grep -o 'post-copy broke after the switch-over.*' | cut -c1-300)"

# 5. the source killed after the switch: the destination exits 1 with one line, promptly
log5=$TMPDIR/src5.log
fresh_source "$log5" "$TMPDIR/api5.sock"
start_switch "$TMPDIR/api5.sock" 7105 "$TMPDIR/d5.log"
kill -9 "$CVISOR_PID"
wait "$CVISOR_PID" 2>/dev/null || true
CVISOR_PID=
wait_exit $inc 20 || { kill -9 $inc; show_console "$TMPDIR/d5.log"; fail "the destination still runs 20 s after its source died"; }
grep -q 'postcopy: all' "$TMPDIR/d5.log" && fail "the destination had every page before the kill: the window was missed"
[ "$xrc" != 0 ] || { show_console "$TMPDIR/d5.log"; fail "the destination exited 0 after its source died"; }
n=$(count_of "$TMPDIR/d5.log" "the guest cannot go on")
[ "$n" = 1 ] || { show_console "$TMPDIR/d5.log"; fail "$n lines about the lost source on the destination (want 1)"; }
st=$(grep -n 'migration received: the VM runs here now' "$TMPDIR/d5.log" | head -n1 | cut -d: -f1)
said=$(tail -n "+$((st + 1))" "$TMPDIR/d5.log" | grep '^cvisor: ' | grep -v '^cvisor: debug: ' || true)
[ "$(echo "$said" | wc -l)" = 1 ] || { show_console "$TMPDIR/d5.log"; fail "the destination said more than one line after its source died: $said"; }
check "source killed after the switch: destination exit $xrc after $((xs / 10)).$((xs % 10)) s: $(grep -o 'postcopy:.*cannot go on' "$TMPDIR/d5.log" | cut -c1-200)"
