#!/bin/sh
# Boot benchmark (inside the rig, with QEMU as the peer): alternating cvisor and
# QEMU -M microvm on the same kernel and initramfs, 2 vCPUs, 512 MiB, the guest
# powering off as soon as it reaches init. Prints one line per run and medians.
# timeout: 900
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${QEMU:?QEMU is not set (run with tools/rig/rig.sh --with-qemu)}"
RUNS=${BENCH_RUNS:-5}
cmdline="console=ttyS0 mode=poweroff"
res=$TMPDIR/results
: >"$res"
i=0
while [ $i -lt "$RUNS" ]; do
	i=$((i + 1))
	for vmm in cvisor qemu; do
		if [ $vmm = cvisor ]; then
			line=$(vmmtime -g 512 CVISOR-GUEST-INIT -- "$CVISOR" run --kernel "$KERNEL" \
				--initrd "$INITRD" --cpus 2 --memory 512M --cmdline "$cmdline")
		else
			line=$(vmmtime -g 512 CVISOR-GUEST-INIT -- "$QEMU" -M microvm -accel kvm -cpu host \
				-smp 2 -m 512 -nographic -no-reboot -nodefaults -serial stdio \
				-kernel "$KERNEL" -initrd "$INITRD" -append "$cmdline")
		fi
		echo "run $i $vmm $line"
		echo "$vmm $line" >>"$res"
	done
done

# median of field F for vmm V
median() {
	grep "^$1 " "$res" | grep -o "$2=[-0-9.]*" | cut -d= -f2 | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo
echo "BENCH boot (median of $RUNS runs, 2 vCPUs, 512 MiB, same kernel+initramfs; rig figures)"
printf 'BENCH %-22s %12s %12s %8s\n' measure cvisor qemu-microvm ratio
for f in first_byte_ms marker_ms exit_ms overhead_kib; do
	c=$(median cvisor $f)
	q=$(median qemu $f)
	r=$(awk -v c="$c" -v q="$q" 'BEGIN { if (q > 0) printf "%.2f", c / q; else print "n/a" }')
	case $f in
	first_byte_ms) name="start->first serial byte (ms)" ;;
	marker_ms) name="start->guest init (ms)" ;;
	exit_ms) name="start->exit after poweroff (ms)" ;;
	overhead_kib) name="VMM RSS beyond guest RAM (KiB)" ;;
	esac
	printf 'BENCH %-34s %10s %12s %8s\n' "$name" "$c" "$q" "$r"
done
grep -q 'rc=0' "$res" || fail "no run exited 0"
