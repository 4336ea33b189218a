#!/bin/sh
# I/O benchmark (rig, with QEMU as the peer): the same guest, image and tap under
# cvisor (virtio-blk/net over PCI) and QEMU (-M microvm,pcie=on with virtio-blk-pci
# and virtio-net-pci, default caching, no vhost), one after the other, twice.
# Disk: randio in the guest (O_DIRECT, queue depth 1): sequential 1 MiB and random
# 4 KiB, read and write. Net: 64 MiB over TCP (busybox nc) each way.
# timeout: 1500
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${QEMU:?run with tools/rig/rig.sh --with-qemu}"
SECS=${BENCH_IO_SECS:-4}
MB=256
img=$TMPDIR/bench.img
dd if=/dev/zero of="$img" bs=1M count=256 2>/dev/null
tunctl -t tap0 >/dev/null
ip addr add 10.0.0.1/24 dev tap0
ip link set tap0 up
trap 'stop_vm; tunctl -d tap0 >/dev/null 2>&1 || true' EXIT
res=$TMPDIR/res
: >"$res"
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

bench_one() { # bench_one NAME: a VM is up with its shell on $log
	vmm=$1
	shell_run "ip addr add 10.0.0.2/24 dev eth0 && ip link set eth0 up && ping -c 1 -w 20 10.0.0.1 >/dev/null" 60 >/dev/null
	[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "$vmm: network not up"; }
	for t in "write seq 1048576" "read seq 1048576" "write rand 4096" "read rand 4096"; do
		set -- $t
		out=$(shell_run "randio $1 $2 $3 $SECS /dev/vda" 120)
		mbs=$(echo "$out" | grep -o 'MB/s=[0-9.]*' | cut -d= -f2)
		iops=$(echo "$out" | grep -o 'iops=[0-9]*' | cut -d= -f2)
		[ -n "$mbs" ] || { show_console "$log"; fail "$vmm: randio $t: $out"; }
		echo "$vmm blk_$2_$1_$3 $mbs $iops" >>"$res"
		echo "  $vmm disk $1 $2 bs=$3: $mbs MB/s, $iops IOPS"
	done
	# guest -> L1
	nc -l -p 5001 >/dev/null &
	ncpid=$!
	sleep 0.5
	t0=$(now_cs)
	shell_run "dd if=/dev/zero bs=1M count=$MB 2>/dev/null | nc 10.0.0.1 5001" 300 >/dev/null
	t1=$(now_cs)
	wait $ncpid 2>/dev/null || true
	up=$(awk -v t=$((t1 - t0)) -v m=$MB 'BEGIN { if (t < 1) t = 1; printf "%.1f", m * 1.048576 / (t / 100) }')
	# L1 -> guest
	shell_run "(nc -l -p 5002 >/dev/null &) ; sleep 0.5" >/dev/null
	t0=$(now_cs)
	dd if=/dev/zero bs=1M count=$MB 2>/dev/null | timeout 300 nc 10.0.0.2 5002 || true
	t1=$(now_cs)
	down=$(awk -v t=$((t1 - t0)) -v m=$MB 'BEGIN { if (t < 1) t = 1; printf "%.1f", m * 1.048576 / (t / 100) }')
	echo "$vmm net_guest_to_host $up 0" >>"$res"
	echo "$vmm net_host_to_guest $down 0" >>"$res"
	echo "  $vmm net: guest->L1 $up MB/s, L1->guest $down MB/s"
}

for round in 1 2; do
	log=$TMPDIR/cvisor-$round.log
	VMM_CMD=
	shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 512M \
		--disk "path=$img" --net tap=tap0 --cmdline "console=ttyS0 mode=shell"
	bench_one cvisor
	shell_poweroff
	log=$TMPDIR/qemu-$round.log
	VMM_CMD="$QEMU -M microvm,pcie=on -accel kvm -cpu host -smp 1 -m 512 -nographic -no-reboot -nodefaults -serial stdio"
	shell_start "$log" -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 mode=shell" \
		-drive "file=$img,if=none,id=d0,format=raw" -device virtio-blk-pci,drive=d0 \
		-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0
	bench_one qemu
	shell_poweroff
	VMM_CMD=
done

echo
echo "BENCH io (best of 2 rounds; rig figures, 1 vCPU, 512 MiB, raw image on L1 tmpfs)"
printf 'BENCH %-28s %10s %10s %7s\n' measure cvisor qemu ratio
for m in blk_seq_write_1048576 blk_seq_read_1048576 blk_rand_write_4096 blk_rand_read_4096 \
	net_guest_to_host net_host_to_guest; do
	c=$(grep "^cvisor $m " "$res" | awk '{ print $3 }' | sort -n | tail -n1)
	q=$(grep "^qemu $m " "$res" | awk '{ print $3 }' | sort -n | tail -n1)
	r=$(awk -v c="$c" -v q="$q" 'BEGIN { if (q > 0) printf "%.2f", c / q; else print "n/a" }')
	printf 'BENCH %-28s %10s %10s %7s\n' "$m (MB/s)" "$c" "$q" "$r"
done
