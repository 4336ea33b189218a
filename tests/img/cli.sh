#!/bin/sh
# `cvisor img` at its edges: bad input gets one line on stderr and exit 2;
# check finds (and repairs) leaks and corruptions the way qemu-img does;
# hostile headers are refused; the corrupt bit; JSON output; the image lock
# against qemu-img / qemu-io and against a second cvisor.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1

# bad CMD...: exit 2, nothing on stdout, exactly one line on stderr
bad() {
	_n=$1
	shift
	rc=0
	"$@" >stdout 2>stderr || rc=$?
	if [ $rc = 2 ] && [ ! -s stdout ] && [ "$(wc -l <stderr)" = 1 ]; then
		pass "usage:$_n"
	else
		fail "usage:$_n" "exit $rc, stdout $(wc -c <stdout) bytes, stderr: $(tr '\n' '|' <stderr)"
	fi
}
py() { python3 -c "$@"; }
# poke FILE OFF HEX: overwrite bytes at OFF
poke() { py "import sys; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))" "$@"; }
be64() { py "import sys,struct; f=open(sys.argv[1],'rb'); f.seek(int(sys.argv[2])); print(struct.unpack('>Q', f.read(8))[0])" "$@"; }

C=$CVISOR
"$C" img create -q -f qcow2 good.qcow2 4M
head -c 1M /dev/zero >raw.img
bad no_command "$C" img
bad unknown_command "$C" img frob
bad create_format "$C" img create -f vmdk x.img 1M
bad create_no_size "$C" img create -f qcow2 x.qcow2
bad create_bad_size "$C" img create -f qcow2 x.qcow2 1Q
bad create_cluster "$C" img create -f qcow2 -o cluster_size=1000 x.qcow2 1M
bad create_option "$C" img create -f qcow2 -o frobnicate=1 x.qcow2 1M
bad create_backing_fmt "$C" img create -f qcow2 -b raw.img -F vmdk x.qcow2
bad create_missing_backing "$C" img create -f qcow2 -b nonexistent.img -F raw x.qcow2
bad info_missing "$C" img info nonexistent.qcow2
bad info_output "$C" img info --output xml good.qcow2
bad check_repair "$C" img check -r bogus good.qcow2
bad convert_format "$C" img convert -O vmdk good.qcow2 out.vmdk
bad convert_args "$C" img convert good.qcow2
bad resize_shrink "$C" img resize good.qcow2 -1M
bad resize_size "$C" img resize good.qcow2 lots
bad commit_no_backing "$C" img commit good.qcow2
bad commit_raw "$C" img commit raw.img
bad rebase_no_base "$C" img rebase good.qcow2
bad snapshot_no_action "$C" img snapshot good.qcow2
bad snapshot_missing "$C" img snapshot -a nosuch good.qcow2
bad convert_c_raw "$C" img convert -c -O raw good.qcow2 out.raw
bad convert_compression_type "$C" img convert -c -O qcow2 -o compression_type=lzo good.qcow2 out.qcow2
bad create_zstd_v2 "$C" img create -f qcow2 -o compat=0.10,compression_type=zstd x.qcow2 1M
bad write_args "$C" img write good.qcow2 0

# hostile headers: refused at open with one line naming the image
hdr() {
	_n=$1
	shift
	cp good.qcow2 h.qcow2
	poke h.qcow2 "$@"
	bad "header_$_n" "$C" img info -f qcow2 h.qcow2
	grep -q h.qcow2 stderr || fail "header_$_n:names_image" "$(cat stderr)"
}
hdr magic 0 00000000
hdr version 4 00000009
hdr cluster_bits 20 00000040
hdr huge_size 24 4000000000000000
hdr l1_past_eof 40 0000010000000000
hdr l1_huge 36 7fffffff
hdr rt_past_eof 48 0000400000000000
hdr rt_misaligned 48 0000000000010008
hdr overlap 40 0000000000010000
hdr incompatible_bit 72 0000000000000020
hdr extended_l2 72 0000000000000010
hdr refcount_order 96 00000007
hdr header_length 100 00000061
hdr encrypted 32 00000001
hdr snapshots 60 00100000

# check: leaks, then a refcount too small, then the corrupt bit
"$C" img write good.qcow2 0 300k
rt=$(be64 good.qcow2 48)
rb=$(be64 good.qcow2 "$rt")
truncate -s 1M good.qcow2
poke good.qcow2 $((rb + 30)) 0001 # cluster 15: nothing uses it
rc=0; "$C" img check good.qcow2 >chk.out 2>&1 || rc=$?
ok check:leak_found sh -c "[ $rc = 3 ] && grep -q 'Leaked cluster 15 refcount=1 reference=0' chk.out &&
	grep -q '^1 leaked clusters were found' chk.out"
ok check:leak_agrees_with_qemu sh -c "'$QEMU_IMG' check good.qcow2 | grep -q '^1 leaked clusters'"
ok check:repair_leaks sh -c "'$C' img check -r leaks good.qcow2 | grep -q '1 leaked clusters' &&
	'$QEMU_IMG' check -q good.qcow2"
poke good.qcow2 $((rb + 10)) 0000 # cluster 5: data
rc=0; "$C" img check good.qcow2 >chk.out 2>&1 || rc=$?
ok check:corruption_found sh -c "[ $rc = 2 ] && grep -q 'ERROR cluster 5 refcount=0 reference=1' chk.out"
ok check:leaks_only_keeps_errors sh -c "! '$C' img check -r leaks good.qcow2 >/dev/null"
ok check:repair_all sh -c "'$C' img check -r all good.qcow2 >/dev/null && '$QEMU_IMG' check -q good.qcow2 &&
	'$QEMU_IO' -f qcow2 -c 'read -P 0xcd 0 300k' good.qcow2 | grep -qv -i fail"
ok check:json sh -c "'$C' img check --output json good.qcow2 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"corruptions\"] == 0 and d[\"leaks\"] == 0'"
ok info:json sh -c "'$C' img info --output json good.qcow2 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"format\"] == \"qcow2\" and d[\"virtual-size\"] == 4194304 and d[\"cluster-size\"] == 65536'"
ok info:raw sh -c "'$C' img info raw.img | grep -q 'file format: raw'"
poke good.qcow2 79 02
ok corrupt:info sh -c "'$C' img info good.qcow2 | grep -q 'corrupt: true'"
ok corrupt:no_writes sh -c "! '$C' img write good.qcow2 0 4k 2>err && grep -q corrupt err"
ok corrupt:repair_clears sh -c "'$C' img check -r all good.qcow2 >/dev/null &&
	'$C' img info good.qcow2 | grep -q 'corrupt: false' && '$C' img write good.qcow2 0 4k"

# the lock: a second writer is refused, in both directions with QEMU's tools
"$C" img create -q -f qcow2 l.qcow2 64M
"$QEMU_IO" -f qcow2 -c 'sleep 3000' l.qcow2 >/dev/null 2>&1 &
qpid=$!
sleep 1
ok lock:qemu_holds sh -c "! '$C' img write l.qcow2 0 4k 2>err && grep -q 'in use' err"
wait $qpid
"$C" img stress --count 100000 --slot 64k --flush-every 1 l.qcow2 >/dev/null 2>&1 &
cpid=$!
sleep 0.5
ok lock:cvisor_holds sh -c "! '$QEMU_IMG' info l.qcow2 >/dev/null 2>&1 && ! '$C' img write l.qcow2 0 4k 2>/dev/null &&
	! '$C' img info l.qcow2 >/dev/null 2>&1"
kill $cpid 2>/dev/null
wait $cpid 2>/dev/null
ok lock:released "$C" img write l.qcow2 0 4k
finish
