#!/bin/sh
# Live-migration stream options, one guest hopping between processes: refusals
# (different keys, a key on one side only, a key file open to others) leave the
# source running and the destination gone; then hops, each checked by the
# guest's data checksum on the new side: with a pre-shared key (HMAC) on both
# sides, with zstd compression, and under a low bandwidth cap while the guest
# dirties memory continuously (auto-converge must throttle it, and say so);
# a plain hop first, to compare with.
# timeout: 900
# rig-cost: 50
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
api=$TMPDIR/api0.sock
log=$TMPDIR/src.log
keyA=$TMPDIR/keyA
keyB=$TMPDIR/keyB
head -c 32 /dev/urandom >"$keyA"
head -c 32 /dev/urandom >"$keyB"
chmod 600 "$keyA" "$keyB"

# GET /v1/vm's migration object as sent (compact JSON), and one field of it
mig() { "$CVISOR" ctl --api-socket "$1" request GET /v1/vm 2>/dev/null | grep -o '"migration":{[^}]*}' || true; }
mig_field() {
	echo "$1" | grep -o "\"$2\":\"[^\"]*\"" | head -n1 | cut -d: -f2- | tr -d '"'
	echo "$1" | grep -o "\"$2\":[0-9a-z.]*" | head -n1 | cut -d: -f2
}

shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --api-socket "$api" \
	--cmdline "console=ttyS0 mode=shell"
out=$(shell_run "dd if=/dev/urandom of=/dev/shm/blob bs=1M count=32 2>/dev/null && md5sum </dev/shm/blob | cut -c1-32" 120)
sum0=$(echo "$out" | grep -o "^[0-9a-f]\{32\}$" | tail -n1)
[ ${#sum0} = 32 ] || { show_console "$log"; fail "guest set-up failed"; }
shell_run "(i=0; while :; do i=\$((i+1)); echo TICK \$i \$(md5sum </dev/shm/blob | cut -c1-32); sleep 1; done) &" >/dev/null
wait_tick "$log" 2 60 || fail "no ticks"
check "source ticking, data md5 $sum0"

# refused DEST_ARGS -- MIGRATE_ARGS -- WANT_SRC WANT_DST: a migration that must fail
# on both sides with these reasons; the source ticks on, the destination exits 1
# and leaves no API socket behind.
refused() {
	_dargs=$1 _margs=$2 _wsrc=$3 _wdst=$4
	_d=$TMPDIR/refused.log
	rm -f "$TMPDIR/apiR.sock"
	# shellcheck disable=SC2086
	"$CVISOR" run --incoming tcp:127.0.0.1:7020 --api-socket "$TMPDIR/apiR.sock" --serial none \
		$_dargs >"$_d" 2>&1 &
	_dp=$!
	wait_for "$_d" "waiting for a migration" 30 || fail "the destination does not listen"
	# shellcheck disable=SC2086
	"$CVISOR" ctl --api-socket "$api" migrate tcp:127.0.0.1:7020 $_margs >/dev/null ||
		fail "migrate request refused"
	_i=0
	while [ "$(mig_field "$(mig "$api")" state)" = active ] && [ $_i -lt 150 ]; do
		sleep 0.2
		_i=$((_i + 1))
	done
	_m=$(mig "$api")
	[ "$(mig_field "$_m" state)" = failed ] || fail "migration state: $_m"
	_err=$(mig_field "$_m" error)
	echo "$_err" | grep -q "$_wsrc" || fail "source's reason: '$_err', want '$_wsrc'"
	_i=0
	while alive $_dp && [ $_i -lt 100 ]; do sleep 0.2; _i=$((_i + 1)); done
	_drc=0
	wait $_dp || _drc=$?
	[ "$_drc" = 1 ] || { show_console "$_d"; fail "the destination exited $_drc, not 1"; }
	_last=$(tr -d '\r' <"$_d" | tail -n1)
	echo "$_last" | grep -q "$_wdst" || { show_console "$_d"; fail "destination's last line: '$_last'"; }
	[ ! -e "$TMPDIR/apiR.sock" ] || fail "the refusing destination left its API socket"
	alive "$CVISOR_PID" || { show_console "$log"; fail "the source died"; }
	_n=$(last_tick "$log")
	wait_tick "$log" $((_n + 1)) 30 || fail "the source stopped ticking"
	check "refused: source '$_err'; destination exit 1: '$_last'"
}

refused "--migrate-key-file $keyB" "--key-file $keyA" "keys differ" "keys differ"
refused "" "--key-file $keyA" "the destination has no key" "this side has none"
refused "--migrate-key-file $keyA" "" "the destination requires a key" "the source sent no key"

# a key file others may read: refused up front (API 400; the destination exit 2)
cp "$keyA" "$TMPDIR/keyOpen"
chmod 644 "$TMPDIR/keyOpen"
o=$("$CVISOR" ctl --api-socket "$api" migrate tcp:127.0.0.1:7020 --key-file "$TMPDIR/keyOpen" 2>&1) &&
	fail "a key file open to others was accepted"
echo "$o" | grep -q "chmod 600" || fail "key file open to others: '$o'"
rc=0
o=$("$CVISOR" run --incoming tcp:127.0.0.1:7020 --migrate-key-file "$TMPDIR/keyOpen" 2>&1) || rc=$?
[ "$rc" = 2 ] && echo "$o" | grep -q "chmod 600" || fail "destination with an open key file: $rc '$o'"
rc=0
o=$("$CVISOR" run --kernel "$KERNEL" --migrate-key-file "$keyA" 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "--migrate-key-file without --incoming: $rc '$o'"
check "key files open to others refused: '$o'"

# hop N PORT "MIGRATE ARGS" "DEST ARGS": move the guest from the process behind $api
# to a new one (console $TMPDIR/dN.log, API $TMPDIR/apiN.sock, stdin a FIFO that
# becomes the shell's fd 3); the old one must exit 0, the new one tick on with the
# same checksum. Sets HOP (the source's "migrated to" line) and MAXTHR (the highest
# throttle_pct seen in GET /v1/vm while it ran).
hop() {
	_n=$1 _port=$2 _margs=$3 _dargs=$4
	_dlog=$TMPDIR/d$_n.log
	rm -f "$TMPDIR/din$_n"
	mkfifo "$TMPDIR/din$_n"
	# shellcheck disable=SC2086
	"$CVISOR" run --verbose --incoming tcp:127.0.0.1:$_port --api-socket "$TMPDIR/api$_n.sock" \
		$_dargs <"$TMPDIR/din$_n" >"$_dlog" 2>&1 &
	_dpid=$!
	exec 4>"$TMPDIR/din$_n"
	wait_for "$_dlog" "waiting for a migration" 30 || fail "destination $_n does not listen"
	_t0=$(date +%s)
	# shellcheck disable=SC2086
	"$CVISOR" ctl --api-socket "$api" migrate tcp:127.0.0.1:$_port $_margs >/dev/null ||
		fail "migrate request refused"
	MAXTHR=0
	_i=0
	while alive "$CVISOR_PID" && [ $_i -lt 1500 ]; do
		_t=$(mig_field "$(mig "$api")" throttle_pct)
		[ -n "$_t" ] && [ "$_t" -gt "$MAXTHR" ] && MAXTHR=$_t
		sleep 0.2
		_i=$((_i + 1))
	done
	alive "$CVISOR_PID" && { show_console "$log"; mig "$api"; fail "the source still runs 300 s after migrate"; }
	RC=0
	wait "$CVISOR_PID" || RC=$?
	[ "$RC" = 0 ] || { show_console "$log"; fail "the source exited $RC after migrating"; }
	HOP=$(tr -d '\r' <"$log" | grep -o 'migrated to.*' | tail -n1)
	_last=$(last_tick "$log")
	# the shell and the API are the destination's now
	exec 3>&-
	exec 3>&4 4>&-
	CVISOR_PID=$_dpid
	log=$_dlog
	_slog=$_dlog
	api=$TMPDIR/api$_n.sock
	wait_tick "$log" $((_last + 2)) 60 || stalled "$_n"
	_sums=$(tick_sums "$log")
	[ "$_sums" = "$sum0" ] || { show_console "$log"; fail "checksums on destination $_n: $_sums (want $sum0)"; }
	check "hop $_n in $(($(date +%s) - _t0)) s, same checksum: $HOP"
}

# a destination whose guest stopped ticking: wake it with console input. Ticks
# that come back then were held up by a timer interrupt that never came; none
# means the guest is stuck for good. Either way the hop failed.
stalled() {
	_b=$(last_tick "$log")
	printf 'cat /proc/uptime\n' >&3
	_i=0
	while [ "$(last_tick "$log")" -le "$_b" ] && [ $_i -lt 100 ]; do
		sleep 0.2
		_i=$((_i + 1))
	done
	if [ "$(last_tick "$log")" -gt "$_b" ]; then
		vcpu_state
		tr -d '\r' <"$log" | tail -n 8
		fail "destination $1 did not tick for 60 s, then ticked on after console input: a timer interrupt was lost"
	fi
	fail "destination $1 does not tick on, not even after console input"
}

hop 1 7021 "" "" # plain, to compare with
hop 2 7022 "--key-file $keyA" "--migrate-key-file $keyA"
echo "$HOP" | grep -q "authenticated" || fail "the keyed migration does not say so: $HOP"

hop 3 7023 "--compress zstd" ""
echo "$HOP" | grep -q "zstd" || fail "the compressed migration does not say so: $HOP"

# a guest that dirties 16 MiB over and over, at twice the cap: without
# throttling it could never converge
# (busybox dd prints no rate: the guest's uptime before and after, in 1/100 s)
t=$(shell_run "cut -d' ' -f1 /proc/uptime; dd if=/dev/urandom of=/dev/shm/churn bs=1M count=16 2>/dev/null; cut -d' ' -f1 /proc/uptime" 120)
mbs=$(echo "$t" | grep '^[0-9.]*$' | tr -d . | awk 'NR == 1 { a = $1 } NR == 2 { d = $1 - a; print (d > 0 ? int(1677 / d) : 8) }')
[ -n "$mbs" ] || mbs=8
cap=$((mbs / 2))
[ "$cap" -ge 1 ] || cap=1
check "the guest dirties about $mbs MB/s; cap $cap MB/s"
shell_run "(while :; do dd if=/dev/urandom of=/dev/shm/churn bs=1M count=16 conv=notrunc 2>/dev/null; done) &" >/dev/null
hop 4 7024 "--max-bandwidth $cap --key-file $keyA" "--migrate-key-file $keyA"
thr=$(echo "$HOP" | grep -o 'auto-converge [0-9]*' | awk '{ print $2 }')
[ "${thr:-0}" -gt 0 ] || fail "no auto-converge under a $cap MB/s cap: $HOP"
[ "$MAXTHR" -gt 0 ] || fail "GET /v1/vm never showed throttle_pct > 0"
check "converged under a $cap MB/s cap with auto-converge (up to $thr%, seen in GET /v1/vm: $MAXTHR%)"

shell_run "kill %2 2>/dev/null; true" >/dev/null
shell_poweroff
