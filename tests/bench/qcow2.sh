#!/bin/sh
# qcow2 benchmark: in-process random 4 KiB writes into a fresh qcow2 (the
# allocation path) and random reads, against the same on raw; then guest-side
# randio on a qcow2 overlay over a raw base, cvisor vs QEMU (virtio-blk-pci).
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${QEMU:?run with tools/rig/rig.sh --with-qemu}"
S=${BENCH_QCOW2_SECS:-4}
res=$TMPDIR/res
: >"$res"
for f in raw qcow2; do
	"$CVISOR" img create -q -f $f "$TMPDIR/b.$f" 1G >/dev/null
	w=$("$CVISOR" img bench -f $f write "$S" "$TMPDIR/b.$f" | grep -o 'MB/s=[0-9.]*' | cut -d= -f2)
	r=$("$CVISOR" img bench -f $f read "$S" "$TMPDIR/b.$f" | grep -o 'MB/s=[0-9.]*' | cut -d= -f2)
	echo "$f write $w" >>"$res"
	echo "$f read $r" >>"$res"
	echo "  in-process $f: random 4K write $w MB/s, read $r MB/s"
	rm -f "$TMPDIR/b.$f"
done

base=$TMPDIR/base.raw
dd if=/dev/zero of="$base" bs=1M count=256 2>/dev/null
for vmm in cvisor qemu; do
	ov=$TMPDIR/ov-$vmm.qcow2
	"$CVISOR" img create -q -f qcow2 -b "$base" -F raw "$ov" >/dev/null
	log=$TMPDIR/$vmm.log
	if [ $vmm = cvisor ]; then
		VMM_CMD=
		shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 512M \
			--disk "path=$ov,format=qcow2" --cmdline "console=ttyS0 mode=shell"
	else
		VMM_CMD="$QEMU -M microvm,pcie=on -accel kvm -cpu host -smp 1 -m 512 -nographic -no-reboot -nodefaults -serial stdio"
		shell_start "$log" -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 mode=shell" \
			-drive "file=$ov,if=none,id=d0,format=qcow2" -device virtio-blk-pci,drive=d0
	fi
	for t in "write rand 4096" "read rand 4096" "write seq 1048576" "read seq 1048576"; do
		set -- $t
		out=$(shell_run "randio $1 $2 $3 $S /dev/vda" 120)
		mbs=$(echo "$out" | grep -o 'MB/s=[0-9.]*' | cut -d= -f2)
		echo "guest-$vmm $2_$1_$3 ${mbs:-nan}" >>"$res"
		echo "  guest on qcow2 overlay, $vmm: $1 $2 bs=$3: $mbs MB/s"
	done
	shell_poweroff
	VMM_CMD=
done
echo
echo "BENCH qcow2 (rig figures)"
for op in write read; do
	q=$(awk -v o=$op '$1 == "qcow2" && $2 == o { print $3 }' "$res")
	r=$(awk -v o=$op '$1 == "raw" && $2 == o { print $3 }' "$res")
	echo "BENCH in-process random 4K $op: qcow2 $q MB/s, raw $r MB/s, ratio $(awk -v a="$q" -v b="$r" 'BEGIN { printf "%.2f", a / b }')"
done
for m in rand_write_4096 rand_read_4096 seq_write_1048576 seq_read_1048576; do
	c=$(awk -v m=$m '$1 == "guest-cvisor" && $2 == m { print $3 }' "$res")
	q=$(awk -v m=$m '$1 == "guest-qemu" && $2 == m { print $3 }' "$res")
	echo "BENCH guest $m on qcow2: cvisor $c MB/s, qemu $q MB/s, ratio $(awk -v a="$c" -v b="$q" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done
