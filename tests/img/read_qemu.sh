#!/bin/sh
# Images made by qemu-img / qemu-io read byte-identical through cvisor:
# backing chains (raw and qcow2 bases), compressed clusters (zlib, zstd), zero
# clusters, discards, cluster sizes 512 B to 2 MiB, every refcount width,
# version 2 images, lazy refcounts.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
head -c 8M /dev/urandom >base.raw
# some zeroes in the base, so that zero detection has something to find
dd if=/dev/zero of=base.raw bs=64k seek=20 count=8 conv=notrunc 2>/dev/null

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }

"$QEMU_IMG" create -q -f qcow2 -b base.raw -F raw mid.qcow2
qio -c 'write -P 0x11 1M 1M' -c 'write -z 3M 512k' -c 'write -P 0x22 7M 100k' mid.qcow2
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4096 -b mid.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 0x33 1536k 1M' -c 'write -z -u 5M 64k' -c 'discard 7M 64k' \
	-c 'write -P 0x44 4095k 3k' top.qcow2
ok read:chain_raw_base same_raw mid.qcow2
ok read:chain_depth2 same_raw top.qcow2
"$QEMU_IMG" create -q -f qcow2 -b top.qcow2 -F qcow2 top2.qcow2
qio -c 'write -P 0x55 6M 8k' top2.qcow2
ok read:chain_depth3 same_raw top2.qcow2

"$QEMU_IMG" convert -O raw top.qcow2 flat.raw
# compressible data for the compressed images: text, then the random rest
seq 1 2000000 | head -c 4M | dd of=flat.raw conv=notrunc 2>/dev/null
"$QEMU_IMG" convert -c -O qcow2 flat.raw zlib.qcow2
ok read:compressed_zlib same_raw zlib.qcow2
ok read:compressed_present sh -c "'$QEMU_IMG' check zlib.qcow2 | grep -qv ' 0.00% compressed'"
"$QEMU_IMG" convert -c -O qcow2 -o compression_type=zstd flat.raw zstd.qcow2
ok read:compressed_zstd same_raw zstd.qcow2
"$QEMU_IMG" convert -c -O qcow2 -o cluster_size=512 flat.raw zlib512.qcow2
ok read:compressed_512 same_raw zlib512.qcow2
"$QEMU_IMG" convert -c -O qcow2 -o cluster_size=2M flat.raw zlib2m.qcow2
ok read:compressed_2M same_raw zlib2m.qcow2

for cs in 512 4k 64k 2M; do
	"$QEMU_IMG" convert -O qcow2 -o cluster_size=$cs flat.raw c$cs.qcow2
	qio -c "write -z 100k 300k" -c "write -P 0x66 2M 70k" c$cs.qcow2
	ok read:cluster_$cs same_raw c$cs.qcow2
done
for rb in 1 2 4 8 16 32 64; do
	"$QEMU_IMG" convert -O qcow2 -o refcount_bits=$rb flat.raw r$rb.qcow2
	ok read:refcount_bits_$rb same_raw r$rb.qcow2
done
"$QEMU_IMG" create -q -f qcow2 -o compat=0.10 -b base.raw -F raw v2.qcow2
qio -c 'write -P 0x77 1M 300k' -c 'write -z 2M 64k' v2.qcow2
ok read:version2 same_raw v2.qcow2
"$QEMU_IMG" create -q -f qcow2 -o lazy_refcounts=on v3lazy.qcow2 8M
qio -c 'write -P 0x78 1M 300k' v3lazy.qcow2
ok read:lazy_refcounts same_raw v3lazy.qcow2
# a backing file shorter than the image reads as zeroes past its end
head -c 1M base.raw >short.raw
"$QEMU_IMG" create -q -f qcow2 -b short.raw -F raw short.qcow2 4M
qio -c 'write -P 0x79 3M 64k' short.qcow2
ok read:short_backing same_raw short.qcow2
# info and check agree with qemu-img on what these images are
ok info:backing sh -c "'$CVISOR' img info --output json top.qcow2 | grep -q '\"backing-filename-format\": \"qcow2\"'"
ok info:virtual_size sh -c "[ \"\$('$CVISOR' img info --output json top2.qcow2 | sed -n 's/.*virtual-size\": \\([0-9]*\\).*/\\1/p')\" = 8388608 ]"
for f in mid top top2 zlib zstd c512 c2M r1 r64 v2 v3lazy; do
	ok check:$f "$CVISOR" img check $f.qcow2
done
finish
