#!/bin/sh
# kill -9 the writer at a random moment, over and over: `qemu-img check` never
# finds corruption (leaked clusters are allowed), and every write the writer
# saw flushed reads back. Iterations: CRASH_ITERATIONS (default 24), in four
# layouts: 64 KiB clusters over a raw base, 512-byte clusters, version 2 over
# a base, lazy refcounts (the dirty bit: cvisor repairs it on the next open).
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
n=${CRASH_ITERATIONS:-24}
head -c 32M /dev/urandom >base.raw
rnd() { od -An -N2 -tu2 /dev/urandom | tr -d ' '; }

i=0
while [ $i -lt "$n" ]; do
	i=$((i + 1))
	seed=$(rnd)
	b=
	case $((i % 4)) in
	0) what=lazy opts="-o lazy_refcounts=on -b base.raw -F raw" b="--base base.raw" ;;
	1) what=512 opts="-o cluster_size=512" ;;
	2) what=v2 opts="-o compat=0.10 -b base.raw -F raw" b="--base base.raw" ;;
	*) what=64k opts="-b base.raw -F raw" b="--base base.raw" ;;
	esac
	rm -f c.qcow2 log
	# shellcheck disable=SC2086
	"$CVISOR" img create -q -f qcow2 $opts c.qcow2 2G
	"$CVISOR" img stress --seed "$seed" --count 1000000 --slot 72k --flush-every 2 c.qcow2 >log 2>&1 &
	pid=$!
	# somewhere between 0.05 and 2.5 seconds into the run (it takes longer)
	sleep "$(awk -v r="$(rnd)" 'BEGIN { printf "%.2f", 0.05 + (r % 246) / 100 }')"
	kill -KILL $pid 2>/dev/null
	wait $pid 2>/dev/null
	last=$(sed -n 's/^flushed //p' log | tail -n 1)
	last=${last:-0}
	name="crash:$i:$what"
	info="seed $seed, $last ops flushed"
	case $opts in *lazy*)
		# the dirty bit is set: a writable open rebuilds the refcounts
		if ! "$CVISOR" img check -q -r all c.qcow2 >/dev/null 2>&1; then
			fail "$name" "$info: repairing the dirty image failed"
			continue
		fi ;;
	esac
	rc=0
	"$QEMU_IMG" check c.qcow2 >check.out 2>&1 || rc=$?
	if [ $rc != 0 ] && [ $rc != 3 ]; then
		fail "$name" "$info: qemu-img check exit $rc: $(grep -m3 -e ERROR -e error check.out | tr '\n' ' ')"
		cp c.qcow2 "${TMPDIR:-/tmp}/cvisor-crash-$seed.qcow2"
		continue
	fi
	# shellcheck disable=SC2086
	if ! "$CVISOR" img stress --seed "$seed" --slot 72k --count 1000000 --flush-every 2 \
		--verify "$last" $b c.qcow2 >verify.out 2>&1; then
		fail "$name" "$info: $(tr '\n' ' ' <verify.out)"
		continue
	fi
	pass "$name ($info, $(sed -n 's/^verified \([0-9]*\) slots.*/\1/p' verify.out) slots verified, $(grep -c Leaked check.out) clusters leaked)"
done
finish
