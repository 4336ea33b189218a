#!/bin/sh
# Images made or written by cvisor pass `qemu-img check` (no errors, no leaks)
# and `qemu-img compare` against what was written: convert, writes into
# images of every kind qemu-img makes, zero/discard, refcount table growth,
# commit, rebase, resize, and seeded write/zero streams with a verifier.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
head -c 8M /dev/urandom >base.raw
seq 1 2000000 | head -c 2M | dd of=base.raw conv=notrunc 2>/dev/null
dd if=/dev/zero of=base.raw bs=64k seek=40 count=8 conv=notrunc 2>/dev/null

both() { qcheck "$1" && "$QEMU_IMG" compare -q "$2" "$1"; }
# patch FILE OFF LEN BYTE: what a write of LEN bytes of BYTE at OFF does to a raw copy
patch() { python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); f.write(bytes([int(sys.argv[4], 0)]) * int(sys.argv[3]))" "$@"; }

for o in cluster_size=512 cluster_size=4k cluster_size=64k cluster_size=2M refcount_bits=1 \
	refcount_bits=8 refcount_bits=64 compat=0.10 lazy_refcounts=on; do
	rm -f out.qcow2
	"$CVISOR" img convert -O qcow2 -o $o base.raw out.qcow2 >/dev/null 2>&1
	ok convert:$o both out.qcow2 base.raw
done
# a raw file of an odd size: the qcow2 rounds up to whole sectors, as qemu-img's does
head -c 1000000 base.raw >odd.raw
"$CVISOR" img convert -O qcow2 odd.raw odd.qcow2 >/dev/null 2>&1
ok convert:odd_size both odd.qcow2 odd.raw
"$QEMU_IMG" create -q -f qcow2 -b base.raw -F raw chain.qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x12 1M 1M' -c 'write -z 3M 64k' chain.qcow2 >/dev/null
"$QEMU_IMG" convert -O raw chain.qcow2 chain.raw
"$CVISOR" img convert -O qcow2 chain.qcow2 flat.qcow2
ok convert:flatten_chain both flat.qcow2 chain.raw

# convert -c: compressed clusters (deflate, or zstd with compression_type=zstd)
# that qemu-img reads byte-identical; smaller than the plain conversion
"$CVISOR" img convert -O qcow2 base.raw plain.qcow2
plain=$(stat -c %s plain.qcow2)
for o in default compression_type=zstd cluster_size=512 cluster_size=2M \
	cluster_size=4k,compression_type=zstd compat=0.10 refcount_bits=1 refcount_bits=2; do
	rm -f cz.qcow2
	if [ $o = default ]; then
		"$CVISOR" img convert -c -O qcow2 base.raw cz.qcow2
	else
		"$CVISOR" img convert -c -O qcow2 -o $o base.raw cz.qcow2
	fi
	ok convert_c:$o both cz.qcow2 base.raw
	ok convert_c:$o:compressed sh -c "'$QEMU_IMG' check cz.qcow2 | grep -q 'allocated.* [1-9][0-9.]*% compressed'"
	ok convert_c:$o:cvisor_reads same_raw cz.qcow2
	case $o in *zstd*) ok convert_c:$o:type sh -c "'$QEMU_IMG' info cz.qcow2 | grep -q 'compression type: zstd'" ;; esac
	case $o in default | *zstd) ok convert_c:$o:smaller [ "$(stat -c %s cz.qcow2)" -lt "$plain" ] ;; esac
done
# a compressed image made by cvisor takes writes (over compressed clusters)
"$CVISOR" img convert -c -O qcow2 base.raw cz.qcow2
cp base.raw exp.raw
"$CVISOR" img write -P 0x5c cz.qcow2 100000 70000 && "$CVISOR" img write -z cz.qcow2 1M 64k
patch exp.raw 100000 70000 0x5c
patch exp.raw 1048576 65536 0
ok convert_c:write both cz.qcow2 exp.raw
# a size that is not a multiple of the cluster size: the tail is written plainly
head -c 1000448 base.raw >odd.raw
"$CVISOR" img convert -c -O qcow2 odd.raw odd.qcow2
ok convert_c:odd_size both odd.qcow2 odd.raw

# writes into qemu-made images: partial clusters over backing data, over
# compressed clusters, over zero clusters, in v2 and with 512-byte clusters
"$QEMU_IMG" convert -c -O qcow2 base.raw comp.qcow2
"$QEMU_IMG" create -q -f qcow2 -o compat=0.10 -b base.raw -F raw v2.qcow2
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=512 -b base.raw -F raw c512.qcow2
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=2M -b base.raw -F raw c2m.qcow2
for img in chain comp v2 c512 c2m; do
	"$QEMU_IMG" convert -O raw $img.qcow2 exp.raw
	"$CVISOR" img write -P 0xa1 $img.qcow2 70000 5000 &&
		"$CVISOR" img write -P 0xa2 $img.qcow2 1000k 200k &&
		"$CVISOR" img write -z $img.qcow2 3000k 100k &&
		"$CVISOR" img write -z -u $img.qcow2 4M 1M &&
		"$CVISOR" img write -d $img.qcow2 6M 128k
	patch exp.raw 70000 5000 0xa1
	patch exp.raw 1024000 204800 0xa2
	patch exp.raw 3072000 102400 0
	patch exp.raw 4194304 1048576 0
	# a discard reads back as zeroes or the old data: take what cvisor shows
	"$CVISOR" img convert -O raw $img.qcow2 got.raw
	dd if=got.raw of=exp.raw bs=64k skip=96 seek=96 count=2 conv=notrunc 2>/dev/null
	ok write:$img both $img.qcow2 exp.raw
done

# the refcount table grows many times (512-byte clusters, 64-bit refcounts)
"$CVISOR" img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 grow.qcow2 24M
head -c 20M /dev/urandom >grow.raw
truncate -s 24M grow.raw
"$CVISOR" img convert -O qcow2 -o cluster_size=512,refcount_bits=64 grow.raw grow.qcow2
ok write:refcount_table_growth both grow.qcow2 grow.raw

# created images look right to qemu-img
"$CVISOR" img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw new.qcow2
ok create:info sh -c "'$QEMU_IMG' info new.qcow2 | grep -q 'backing file format: raw' &&
	'$QEMU_IMG' info new.qcow2 | grep -q 'cluster_size: 4096' &&
	'$QEMU_IMG' info new.qcow2 | grep -q '(8388608 bytes)'"
ok create:compare_base both new.qcow2 base.raw
"$CVISOR" img create -q -f raw r.raw 3M
ok create:raw sh -c "[ \$(stat -c %s r.raw) = 3145728 ]"

# commit into a raw base and into a qcow2 base; the top is emptied
cp base.raw b1.raw
"$CVISOR" img create -q -f qcow2 -b b1.raw -F raw o1.qcow2
"$CVISOR" img write -P 0x31 o1.qcow2 100k 300k && "$CVISOR" img write -z o1.qcow2 2M 64k
"$QEMU_IMG" convert -O raw o1.qcow2 exp.raw
"$CVISOR" img commit -q o1.qcow2
ok commit:raw_base sh -c "cmp -s b1.raw exp.raw && '$QEMU_IMG' check -q o1.qcow2 &&
	'$QEMU_IMG' compare -q o1.qcow2 exp.raw"
"$CVISOR" img create -q -f qcow2 b2.qcow2 8M
"$CVISOR" img create -q -f qcow2 -b b2.qcow2 -F qcow2 o2.qcow2
"$CVISOR" img write -P 0x32 o2.qcow2 1M 1M
"$QEMU_IMG" convert -O raw o2.qcow2 exp2.raw
"$CVISOR" img commit -q o2.qcow2
ok commit:qcow2_base both b2.qcow2 exp2.raw

# rebase: safe (data that differs is copied in), unsafe, and dropping the base
head -c 8M /dev/urandom >b3.raw
"$CVISOR" img create -q -f qcow2 -b base.raw -F raw o3.qcow2
"$CVISOR" img write -P 0x33 o3.qcow2 2M 100k
"$QEMU_IMG" convert -O raw o3.qcow2 exp3.raw
"$CVISOR" img rebase -b b3.raw -F raw o3.qcow2
ok rebase:safe sh -c "'$QEMU_IMG' info o3.qcow2 | grep -q 'backing file: b3.raw' &&
	'$QEMU_IMG' check -q o3.qcow2 && '$QEMU_IMG' compare -q o3.qcow2 exp3.raw"
"$CVISOR" img rebase -b '' o3.qcow2
ok rebase:remove sh -c "! '$QEMU_IMG' info o3.qcow2 | grep -q backing &&
	'$QEMU_IMG' check -q o3.qcow2 && '$QEMU_IMG' compare -q o3.qcow2 exp3.raw"
cp b3.raw b4.raw
"$CVISOR" img rebase -u -b b4.raw -F raw o3.qcow2
ok rebase:unsafe sh -c "'$QEMU_IMG' info o3.qcow2 | grep -q 'backing file: b4.raw' &&
	'$QEMU_IMG' compare -q o3.qcow2 exp3.raw"

# resize: the L1 table moves (512-byte clusters: 32 KiB per L2 table)
"$CVISOR" img create -q -f qcow2 -o cluster_size=512 rs.qcow2 1M
"$CVISOR" img write -P 1 rs.qcow2 0 1M && "$CVISOR" img resize rs.qcow2 200M >/dev/null &&
	"$CVISOR" img write -P 2 rs.qcow2 150M 1M
ok resize:grow sh -c "'$QEMU_IMG' check -q rs.qcow2 &&
	! '$QEMU_IO' -f qcow2 -c 'read -P 1 0 1M' -c 'read -P 2 150M 1M' -c 'read -P 0 100M 1M' rs.qcow2 |
	grep -q -i -e fail -e mismatch"
"$CVISOR" img resize r.raw +1M >/dev/null
ok resize:raw sh -c "[ \$(stat -c %s r.raw) = 4194304 ]"

# seeded streams of writes and zeroings, then verified, in several layouts
i=0
for spec in "-o cluster_size=64k -b base.raw -F raw" "-o cluster_size=512" \
	"-o compat=0.10 -b base.raw -F raw" "-o lazy_refcounts=on -b base.raw -F raw" \
	"-o refcount_bits=1,cluster_size=4k" "-o cluster_size=2M -b base.raw -F raw"; do
	i=$((i + 1))
	rm -f s.qcow2
	# shellcheck disable=SC2086
	"$CVISOR" img create -q -f qcow2 $spec s.qcow2 8M
	case $spec in *base.raw*) b="--base base.raw" ;; *) b= ;; esac
	# shellcheck disable=SC2086
	ok stress:$i sh -c "'$CVISOR' img stress --seed $i --count 200 --slot 40k s.qcow2 >/dev/null &&
		'$CVISOR' img stress --seed $i --count 200 --slot 40k --verify 200 --total 200 $b s.qcow2 &&
		'$QEMU_IMG' check -q s.qcow2"
done
finish
