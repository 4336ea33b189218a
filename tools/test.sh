#!/bin/sh
# `make test`: unit tests (ASan+UBSan), a short fuzz run of every target, then
# the guest tests (directly on hosts with VT-x/AMD-V, else in the nested rig).
# Prints PASS/FAIL per test and ends with one line "N passed, N failed".
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
passed=0 failed=0
log=build/test-logs
mkdir -p "$log"

count() { # count <output-file>: add the PASS/FAIL lines of a stage to the totals
	p=$(grep -c '^PASS ' "$1")
	f=$(grep -c '^FAIL ' "$1")
	passed=$((passed + p))
	failed=$((failed + f))
}

echo "== unit tests (ASan + UBSan)"
if make -s unit >"$log/unit.log" 2>&1; then :; fi
# meson's lines look like " 1/13 bus   OK   0.01s"
sed -n 's/^ *[0-9]*\/[0-9]* \([a-z0-9_]*\) *\(OK\|FAIL\|TIMEOUT\|ERROR\).*/\2 \1/p' "$log/unit.log" |
	sed 's/^OK /PASS unit:/; s/^\(FAIL\|TIMEOUT\|ERROR\) /FAIL unit:/' >"$log/unit.res"
if ! grep -q . "$log/unit.res"; then
	echo "FAIL unit:build" >"$log/unit.res"
	tail -40 "$log/unit.log"
fi
grep -q '^FAIL' "$log/unit.res" && grep -A40 -E '^(=+|-+) *[0-9]+/' "$log/unit.log" | tail -80
cat "$log/unit.res"
count "$log/unit.res"

# (10 s a target keeps make test well under 30 minutes on 2 cores with 14
# targets; `make fuzz` runs them for real, 600 s each)
echo "== fuzz smoke (${FUZZ_SMOKE_SECONDS:-10} s per target)"
if make -s build/fuzz/build.ninja >"$log/fuzz.log" 2>&1 && ninja -C build/fuzz >>"$log/fuzz.log" 2>&1; then
	tools/fuzz.sh build/fuzz "${FUZZ_SMOKE_SECONDS:-10}" >"$log/fuzz.res" 2>&1
else
	tail -20 "$log/fuzz.log"
	echo "FAIL fuzz:build" >"$log/fuzz.res"
fi
grep -E '^(PASS|FAIL) ' "$log/fuzz.res"
grep -q '^FAIL' "$log/fuzz.res" && tail -40 "$log/fuzz.res"
count "$log/fuzz.res"

echo "== image tests (qemu-img interop, crash consistency)"
: >"$log/img.res"
for t in tests/img/*.sh; do
	[ "$(basename "$t")" = lib.sh ] && continue
	n=$(basename "$t" .sh)
	if ! CVISOR="$ROOT/build/cvisor" sh "$t" >"$log/img-$n.log" 2>&1; then
		grep -q '^FAIL ' "$log/img-$n.log" || echo "FAIL img:$n (no result lines)" >>"$log/img.res"
	fi
	sed -n 's/^\(PASS\|FAIL\) /\1 img:/p' "$log/img-$n.log" >>"$log/img.res"
done
cat "$log/img.res"
count "$log/img.res"

echo "== guest tests"
# In batches of a few tests, each in a fresh rig boot: the emulated CPU of the
# nested rig occasionally panics the L1 kernel (see tools/rig/README.md), and a
# batch bounds what such a panic takes down. Test failures are never retried.
# One thing is: when the L1 kernel itself panicked or hung, the tests of that
# batch left without a result run again in a fresh rig (at most RIG_RERUNS
# times, 2), and the output says so (the panic is printed in full above); their
# last result is the one counted.
# In the nested rig, RIG_LANES (2) rigs run at once, each L1 with one CPU: an
# L1 is independent of the others (its own network stack, ports, files), and on
# 2 host cores two 1-CPU rigs do about twice the work of one 2-CPU rig. Directly
# on the host the tests share ports and names, so they run one at a time.
rm -f "$log"/rig-*
set -- tests/rig/*.sh
rig_batch() { # rig_batch RESULT-FILE TESTS...: run; print the result file but its summary
	_res=$1
	shift
	tools/rig/rig.sh "$@" >"$_res" 2>&1
	grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$_res"
	if ! grep -q -E '^[0-9]+ passed, [0-9]+ failed$' "$_res"; then
		echo "FAIL rig:$(basename "$_res" .res) (the rig produced no summary)" | tee -a "$_res"
	fi
}
# run_batch B TESTS...: batch B; its output goes to rig-B.out, the result lines
# that count to rig-B.count, and rig-B.done says it is over
run_batch() {
	_b=$1
	shift
	_out=$log/rig-$_b.out _cnt=$log/rig-$_b.count
	res=$log/rig-$_b.res tests=$* try=0
	: >"$_cnt"
	# shellcheck disable=SC2086
	rig_batch "$res" $tests >"$_out"
	# an L1 panic or hang: the tests it left without a result run again in a
	# fresh rig, up to RIG_RERUNS (2) times; every try is printed
	while grep -q -e 'Kernel panic - not syncing' -e 'RIG-HANG' "$res" &&
		[ "$try" -lt "${RIG_RERUNS:-2}" ]; do
		again=
		for _t in $tests; do
			grep -q "^FAIL $(basename "$_t") (no result)" "$res" && again="$again $_t"
		done
		[ -n "$again" ] || break
		try=$((try + 1))
		echo "RIG-FAULT: the rig's L1 kernel panicked or hung (the emulated CPU, not cvisor); once more in a fresh rig ($try of ${RIG_RERUNS:-2}):$again" >>"$_out"
		grep -v ' (no result)$' "$res" | grep -E '^(PASS|FAIL) ' >>"$_cnt"
		res=$log/rig-$_b-again$try.res tests=$again
		# shellcheck disable=SC2086
		rig_batch "$res" $tests >>"$_out"
	done
	grep -E '^(PASS|FAIL) ' "$res" >>"$_cnt"
	touch "$log/rig-$_b.done"
}
# A batch holds at most RIG_BATCH tests (6) and about RIG_BATCH_SECS (240) s of
# them, by each test's "# rig-cost: N" line (default 25 s): an L1 that lives
# longer fills the outer QEMU's 2 GiB translation buffer (about 6.5 MB/s of
# generated code), and the flush that follows is when L1 panics or hangs most
# (tools/rig/README.md). A test that costs that much alone gets a rig of its own.
# The batches go to rig-batches, one line each.
cost_of() { sed -n 's/^# rig-cost: *\([0-9][0-9]*\).*/\1/p' "$1" | head -n1; }
batch="" n=0 secs=0
: >"$log/rig-batches"
flush() { [ -z "$batch" ] || echo "$batch" >>"$log/rig-batches"; batch="" n=0 secs=0; }
for t in "$@"; do
	[ "$(basename "$t")" = lib.sh ] && continue
	c=$(cost_of "$t")
	c=${c:-25}
	if [ "$c" -ge "${RIG_BATCH_SECS:-240}" ]; then
		echo " $t" >>"$log/rig-batches"
		continue
	fi
	[ $((secs + c)) -le "${RIG_BATCH_SECS:-240}" ] || flush
	batch="$batch $t"
	n=$((n + 1))
	secs=$((secs + c))
	[ $n -lt "${RIG_BATCH:-6}" ] || flush
done
flush
nb=$(wc -l <"$log/rig-batches")
lanes=1
[ "$(tools/rig/rig.sh --mode)" = nested ] && lanes=${RIG_LANES:-2}
# a lane takes the next batch off the list until none is left
echo 0 >"$log/rig-next"
lane() {
	while :; do
		# shellcheck disable=SC2016 # (the inner shell expands them)
		_n=$(flock "$log/rig-batches" sh -c 'n=$(($(cat "$1") + 1)); echo $n >"$1"; echo $n' _ "$log/rig-next")
		[ "$_n" -le "$nb" ] || return 0
		# shellcheck disable=SC2046
		run_batch "$_n" $(sed -n "${_n}p" "$log/rig-batches")
	done
}
echo "($nb batches, $lanes at a time)"
pids=
l=0
while [ $l -lt "$lanes" ]; do
	lane &
	pids="$pids $!"
	l=$((l + 1))
done
# print and count the batches in order, each as soon as it is over
b=1
while [ $b -le "$nb" ]; do
	if [ -e "$log/rig-$b.done" ]; then
		cat "$log/rig-$b.out"
		count "$log/rig-$b.count"
		b=$((b + 1))
		continue
	fi
	live=0
	for p in $pids; do kill -0 "$p" 2>/dev/null && live=1; done
	if [ $live = 0 ] && [ ! -e "$log/rig-$b.done" ]; then
		echo "FAIL rig:batch-$b (its lane ended without a result)"
		failed=$((failed + 1))
		b=$((b + 1))
		continue
	fi
	sleep 2
done
wait

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
