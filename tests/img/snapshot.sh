#!/bin/sh
# Internal snapshots, both ways with qemu-img: snapshots made by qemu-img are
# listed, applied and deleted by cvisor and the other way round; cvisor's
# writes into snapshotted images copy shared clusters first (the snapshot
# keeps its data); `qemu-img check` is clean after every step; kill -9 in the
# middle of snapshot operations never corrupts (CRASH_ITERATIONS rounds); an
# image in use, a missing snapshot, a taken name and bad usage get one line
# and a non-zero exit.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
C=$CVISOR
qio() { "$QEMU_IO" -f qcow2 "$@"; }
# reads IMG CMD...: every qemu-io read matches its pattern
reads() {
	_i=$1
	shift
	_o=$(qio "$@" "$_i" 2>&1) && ! echo "$_o" | grep -q -i -e fail -e mismatch -e error
}
# listed IMG NAME: cvisor lists a snapshot named NAME, and so does qemu-img
listed() {
	"$C" img snapshot -l "$1" | awk '{print $2}' | grep -qx "$2" &&
		"$QEMU_IMG" snapshot -l "$1" | awk '{print $2}' | grep -qx "$2"
}
# exit CODE NAME CMD...: CMD exits with CODE and says one line on stderr
exits() {
	_c=$1 _n=$2
	shift 2
	rc=0
	"$@" >out 2>err || rc=$?
	if [ $rc = "$_c" ] && [ "$(wc -l <err)" = 1 ]; then
		pass "$_n"
	else
		fail "$_n" "exit $rc, stderr: $(tr '\n' '|' <err)"
	fi
}

for layout in "64k:" "4k:-o cluster_size=4k" "v2:-o compat=0.10" "lazy:-o lazy_refcounts=on" \
	"512:-o cluster_size=512"; do
	n=${layout%%:*}
	opts=${layout#*:}
	i=s$n.qcow2
	# shellcheck disable=SC2086
	"$QEMU_IMG" create -q -f qcow2 $opts "$i" 8M
	qio -c 'write -P 0xa1 0 3M' -c 'write -P 0xa2 5M 64k' "$i" >/dev/null

	# qemu-img's snapshot: listed by cvisor; cvisor's writes leave it intact
	"$QEMU_IMG" snapshot -c qA "$i"
	ok "$n:list_qemu_snapshot" listed "$i" qA
	ok "$n:write_after_qemu_snapshot" sh -c "'$C' img write -P 0xb1 '$i' 1M 100k &&
		'$C' img write -P 0xb2 '$i' 5M 4k && '$C' img write -z '$i' 2M 64k && qemu-img check -q '$i'"
	ok "$n:new_data" reads "$i" -c 'read -P 0xb1 1M 100k' -c 'read -P 0xa1 0 1M' \
		-c 'read -P 0 2M 64k' -c 'read -P 0xb2 5M 4k'

	# cvisor's snapshot of that state; more writes; check
	ok "$n:create" sh -c "'$C' img snapshot -c cB '$i' && qemu-img check -q '$i'"
	ok "$n:list_cvisor_snapshot" listed "$i" cB
	ok "$n:write_after_cvisor_snapshot" sh -c "'$C' img write -P 0xc1 '$i' 0 4M &&
		'$C' img write -d '$i' 5M 64k && qemu-img check -q '$i'"

	# qemu-img applies cvisor's snapshot, cvisor applies qemu-img's
	cp "$i" q.qcow2
	ok "$n:qemu_applies_cvisor_snapshot" sh -c "'$QEMU_IMG' snapshot -a cB q.qcow2 &&
		'$QEMU_IMG' check -q q.qcow2"
	ok "$n:qemu_applied_data" reads q.qcow2 -c 'read -P 0xb1 1M 100k' -c 'read -P 0xa1 0 1M' \
		-c 'read -P 0 2M 64k' -c 'read -P 0xb2 5M 4k' -c 'read -P 0xa2 5246976 60k'
	cp "$i" q.qcow2
	ok "$n:qemu_applies_own_snapshot" sh -c "'$QEMU_IMG' snapshot -a qA q.qcow2 &&
		'$QEMU_IMG' check -q q.qcow2"
	ok "$n:qemu_applied_data_a" reads q.qcow2 -c 'read -P 0xa1 0 3M' -c 'read -P 0xa2 5M 64k'
	ok "$n:apply_qemu_snapshot" sh -c "'$C' img snapshot -a qA '$i' && qemu-img check -q '$i'"
	ok "$n:applied_data" reads "$i" -c 'read -P 0xa1 0 3M' -c 'read -P 0 3M 2M' \
		-c 'read -P 0xa2 5M 64k'
	ok "$n:apply_cvisor_snapshot" sh -c "'$C' img snapshot -a cB '$i' && qemu-img check -q '$i'"
	ok "$n:applied_data2" reads "$i" -c 'read -P 0xb1 1M 100k' -c 'read -P 0 2M 64k' \
		-c 'read -P 0xb2 5M 4k'
	# writes after an apply copy again; the snapshot still has the old data
	ok "$n:write_after_apply" sh -c "'$C' img write -P 0xd1 '$i' 1M 8k && qemu-img check -q '$i'"
	cp "$i" q.qcow2
	ok "$n:snapshot_kept" sh -c "'$QEMU_IMG' snapshot -a cB q.qcow2 &&
		'$QEMU_IO' -f qcow2 -c 'read -P 0xb1 1M 100k' q.qcow2 | grep -q -v -i -e fail -e mismatch"

	# delete both ways; what is left stays readable and consistent
	ok "$n:delete_qemu_snapshot" sh -c "'$C' img snapshot -d qA '$i' && qemu-img check -q '$i' &&
		! '$QEMU_IMG' snapshot -l '$i' | grep -q qA"
	cp "$i" q.qcow2
	ok "$n:qemu_deletes_cvisor_snapshot" sh -c "'$QEMU_IMG' snapshot -d cB q.qcow2 &&
		'$QEMU_IMG' check -q q.qcow2 && '$C' img check q.qcow2 >/dev/null"
	ok "$n:delete_by_id" sh -c "id=\$('$C' img snapshot -l '$i' | awk '\$2 == \"cB\" {print \$1}') &&
		'$C' img snapshot -d \$id '$i' && qemu-img check -q '$i' &&
		[ -z \"\$('$QEMU_IMG' snapshot -l '$i')\" ]"
	ok "$n:data_after_delete" reads "$i" -c 'read -P 0xd1 1M 8k' -c 'read -P 0xb1 1056768 92k' \
		-c 'read -P 0xb2 5M 4k'
	# the last snapshot is gone: COPIED is back, writes go in place (no growth)
	"$C" img write -P 0xe1 "$i" 1M 8k
	s1=$(stat -c %s "$i")
	"$C" img write -P 0xe2 "$i" 1M 8k
	ok "$n:in_place_again" sh -c "[ $s1 = \$(stat -c %s '$i') ] && qemu-img check -q '$i'"
done

# many snapshots, interleaved with writes; each applied by qemu-img reads back
"$C" img create -q -f qcow2 -o cluster_size=4k m.qcow2 4M
k=1
while [ $k -le 6 ]; do
	"$C" img write -P $k m.qcow2 $((k * 256))k 300k
	"$C" img snapshot -c "m$k" m.qcow2
	k=$((k + 1))
done
"$C" img write -P 0x77 m.qcow2 0 4M
ok many:check sh -c "qemu-img check -q m.qcow2 && [ \$('$C' img snapshot -l m.qcow2 | wc -l) = 8 ]"
ok many:ids sh -c "'$QEMU_IMG' snapshot -l m.qcow2 | awk 'NR > 2 {print \$1}' | tr '\n' ' ' | grep -qx '1 2 3 4 5 6 '"
good=1
for k in 1 3 6; do
	cp m.qcow2 q.qcow2
	"$QEMU_IMG" snapshot -a "m$k" q.qcow2 &&
		reads q.qcow2 -c "read -P $k $((k * 256))k 300k" || good=0
done
ok many:qemu_applies [ $good = 1 ]
"$C" img snapshot -d m3 m.qcow2 && "$C" img snapshot -d m1 m.qcow2
"$C" img snapshot -c m7 m.qcow2
ok many:next_id sh -c "'$QEMU_IMG' snapshot -l m.qcow2 | awk '\$2 == \"m7\" {print \$1}' | grep -qx 7 &&
	qemu-img check -q m.qcow2"
ok many:apply_old sh -c "'$C' img snapshot -a m2 m.qcow2 && qemu-img check -q m.qcow2"
ok many:apply_old_data reads m.qcow2 -c 'read -P 2 512k 300k' -c 'read -P 1 256k 256k'

# compressed clusters are shared by snapshots too
"$QEMU_IMG" create -q -f raw r.raw 4M
seq 1 500000 | head -c 3M | dd of=r.raw conv=notrunc 2>/dev/null
"$C" img convert -c -O qcow2 r.raw z.qcow2
"$C" img snapshot -c z1 z.qcow2
"$C" img write -P 0x55 z.qcow2 64k 4k
ok compressed:cow sh -c "qemu-img check -q z.qcow2 && cp z.qcow2 zq.qcow2 &&
	'$QEMU_IMG' snapshot -a z1 zq.qcow2 && '$QEMU_IMG' compare -q zq.qcow2 r.raw &&
	'$C' img snapshot -d z1 z.qcow2 && qemu-img check -q z.qcow2"

# overlays: the snapshot covers the overlay only; the base shows through
"$QEMU_IMG" create -q -f qcow2 -b r.raw -F raw o.qcow2
"$C" img write -P 0x66 o.qcow2 1M 64k
"$C" img snapshot -c o1 o.qcow2
"$C" img write -P 0x67 o.qcow2 1M 128k
ok overlay:apply sh -c "'$C' img snapshot -a o1 o.qcow2 && qemu-img check -q o.qcow2"
cp r.raw oexp.raw
python3 -c "
f = open('oexp.raw', 'r+b'); f.seek(1 << 20); f.write(b'\x66' * 65536)"
ok overlay:data "$QEMU_IMG" compare -q o.qcow2 oexp.raw

# kill -9 in the middle of snapshot operations, over and over: never a
# corruption; a half-done operation leaves the dirty bit (version 3), and the
# next writable open (here QEMU's) rebuilds refcounts and flags
"$C" img create -q -f qcow2 -o cluster_size=4k k.qcow2 16M
"$C" img write -P 0x11 k.qcow2 0 12M
rnd() { od -An -N2 -tu2 /dev/urandom | tr -d ' '; }
r=0
while [ $r -lt "${CRASH_ITERATIONS:-8}" ]; do
	r=$((r + 1))
	setsid sh -c "i=$((r * 1000)); while :; do i=\$((i + 1));
		'$C' img snapshot -c k\$i k.qcow2; '$C' img write -P \$((i % 200 + 1)) k.qcow2 \$((i % 12))M 300k;
		'$C' img snapshot -a k\$i k.qcow2; '$C' img snapshot -d k\$((i - 1)) k.qcow2; done" >/dev/null 2>&1 &
	pid=$!
	sleep "$(awk -v r="$(rnd)" 'BEGIN { printf "%.2f", 0.2 + (r % 100) / 100 }')"
	kill -KILL -$pid 2>/dev/null
	wait $pid 2>/dev/null
	"$QEMU_IO" -f qcow2 -c flush k.qcow2 >/dev/null 2>&1
	rc=0
	"$QEMU_IMG" check k.qcow2 >kcheck.out 2>&1 || rc=$?
	if [ $rc = 0 ] || [ $rc = 3 ]; then
		pass "crash:$r ($(grep -c Leaked kcheck.out) clusters leaked, $("$C" img snapshot -l k.qcow2 | tail -n +3 | wc -l) snapshots)"
	else
		fail "crash:$r" "qemu-img check exit $rc: $(grep -m3 ERROR kcheck.out | tr '\n' ' ')"
		cp k.qcow2 "${TMPDIR:-/tmp}/cvisor-snapshot-crash-$r.qcow2"
	fi
	"$C" img check -q -r leaks k.qcow2
done

# errors: one line, non-zero
"$C" img create -q -f qcow2 e.qcow2 1M
"$C" img snapshot -c e1 e.qcow2
exits 2 err:missing_apply "$C" img snapshot -a nope e.qcow2
exits 2 err:missing_delete "$C" img snapshot -d nope e.qcow2
exits 2 err:name_taken "$C" img snapshot -c e1 e.qcow2
exits 2 err:id_taken "$C" img snapshot -c 1 e.qcow2
exits 2 err:two_actions "$C" img snapshot -c a -d b e.qcow2
exits 2 err:no_action "$C" img snapshot e.qcow2
exits 2 err:empty_name "$C" img snapshot -c '' e.qcow2
exits 2 err:long_name "$C" img snapshot -c "$(printf '%0300d' 0)" e.qcow2
exits 2 err:raw "$C" img snapshot -c x r.raw
exits 2 err:resize_with_snapshots "$C" img resize e.qcow2 2M
"$C" img create -q -f qcow2 -o refcount_bits=1 rb1.qcow2 1M
"$C" img write rb1.qcow2 0 64k
exits 1 err:refcount_width "$C" img snapshot -c x rb1.qcow2
ok err:refcount_width_clean sh -c "qemu-img check -q rb1.qcow2 &&
	[ -z \"\$('$QEMU_IMG' snapshot -l rb1.qcow2)\" ]"
"$QEMU_IO" -f qcow2 -c 'sleep 3000' e.qcow2 >/dev/null 2>&1 &
qpid=$!
sleep 1
exits 2 err:in_use "$C" img snapshot -c e2 e.qcow2
grep -q 'in use' err || fail err:in_use_message "$(cat err)"
wait $qpid
ok err:unchanged sh -c "qemu-img check -q e.qcow2 && [ \$('$C' img snapshot -l e.qcow2 | wc -l) = 3 ]"
finish
