#!/bin/sh
# Snapshot / restore and live-migration benchmark (rig, QEMU as the peer where it
# has the same operation). 1 vCPU guests ticking every 0.2 s on the serial console.
# snapshot time and restore time (to the guest's next tick; cvisor also VMM side) for
# 256 MiB and 1 GiB, QEMU's by migration to and from a file; migration total time and downtime, idle and busy, cvisor and
# QEMU (-M microvm, downtime-limit 50 ms) over loopback.
# timeout: 1500
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${QEMU:?run with tools/rig/rig.sh --with-qemu}"
res=$TMPDIR/res
: >"$res"
tick="(while :; do echo TICK; sleep 0.2; done) &"

for mib in ${BENCH_SNAP_SIZES:-256 1024}; do
	api=$TMPDIR/api$mib.sock
	log=$TMPDIR/s$mib.log
	snap=$TMPDIR/snap$mib
	shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory ${mib}M --api-socket "$api" \
		--cmdline "console=ttyS0 mode=shell"
	# touch half the memory so the snapshot is not trivially empty
	shell_run "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=$((mib / 4)) 2>/dev/null" 300 >/dev/null
	shell_run "$tick" >/dev/null
	wait_for "$log" "^TICK" 30 >/dev/null
	t0=$(awk '{ print $1 }' /proc/uptime)
	"$CVISOR" ctl --api-socket "$api" snapshot "$snap" >/dev/null || fail "snapshot $mib"
	t1=$(awk '{ print $1 }' /proc/uptime)
	"$CVISOR" ctl --api-socket "$api" stop >/dev/null
	wait_vm 30 || true
	exec 3>&-
	snap_ms=$(grep -o 'snapshot written to [^ ]* in [0-9.]* ms' "$log" | awk '{ print $(NF-1) }')
	line=$(vmmtime -g "$mib" -k TICK -- "$CVISOR" run --restore "$snap" --serial stdio 2>&1)
	tick_ms=$(echo "$line" | grep -o 'marker_ms=[0-9.]*' | cut -d= -f2)
	vmm_ms=$("$CVISOR" run --restore "$snap" --serial none 2>&1 & p=$!; sleep 3; kill $p; wait $p 2>/dev/null; true)
	vmm_ms=$(echo "$vmm_ms" | grep -o 'in [0-9.]* ms (VMM side)' | awk '{ print $2 }')
	echo "cvisor snapshot_${mib}_ms ${snap_ms:-nan}" >>"$res"
	echo "cvisor restore_vmm_${mib}_ms ${vmm_ms:-nan}" >>"$res"
	echo "cvisor restore_tick_${mib}_ms ${tick_ms:-nan}" >>"$res"
	echo "  $mib MiB: snapshot ${snap_ms} ms (API call $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms), restore ${vmm_ms} ms VMM-side, ${tick_ms} ms to the next tick"
	rm -rf "$snap"

	# QEMU: a snapshot is a migration into a file (as `virsh save` does), a restore
	# is -incoming from that file; the guest resumes by itself (it was running).
	# (BENCH_QEMU_SNAP_SIZES: QEMU's sizes. Both since the rig's L1 has one CPU
	# and a periodic tick; before, a 1 GiB QEMU guest took L1 down twice.)
	case " ${BENCH_QEMU_SNAP_SIZES:-256 1024} " in *" $mib "*) ;; *) continue ;; esac
	q="$QEMU -M microvm -accel kvm -cpu host -smp 1 -m $mib -nographic -no-reboot -nodefaults -serial stdio"
	qfile=$TMPDIR/qsnap$mib
	VMM_CMD="$q -monitor unix:$TMPDIR/qsnap.mon,server,nowait"
	qlog=$TMPDIR/qs$mib.log
	shell_start "$qlog" -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 mode=shell"
	VMM_CMD=
	shell_run "dd if=/dev/urandom of=/dev/shm/fill bs=1M count=$((mib / 4)) 2>/dev/null" 300 >/dev/null
	shell_run "$tick" >/dev/null
	wait_for "$qlog" "^TICK" 30 >/dev/null
	unixcmd "$TMPDIR/qsnap.mon" "migrate -d exec:cat>$qfile" >/dev/null
	i=0
	info=
	while [ $i -lt 600 ]; do
		info=$(unixcmd "$TMPDIR/qsnap.mon" "info migrate" 300 | tr -d '\r')
		echo "$info" | grep -q -E "Migration status: (completed|failed)" && break
		sleep 0.2
		i=$((i + 1))
	done
	qsnap_ms=$(echo "$info" | grep -o 'total time: [0-9]*' | awk '{ print $3 }')
	unixcmd "$TMPDIR/qsnap.mon" "quit" >/dev/null 2>&1 || true
	stop_vm
	exec 3>&-
	line=$(vmmtime -g "$mib" -k TICK -- $q -kernel "$KERNEL" -initrd "$INITRD" \
		-append "console=ttyS0 mode=shell" -incoming "exec:cat $qfile" 2>&1)
	qtick_ms=$(echo "$line" | grep -o 'marker_ms=[0-9.]*' | cut -d= -f2)
	echo "qemu snapshot_${mib}_ms ${qsnap_ms:-nan}" >>"$res"
	echo "qemu restore_tick_${mib}_ms ${qtick_ms:-nan}" >>"$res"
	echo "  QEMU $mib MiB: snapshot (migrate to a file) ${qsnap_ms:-?} ms, restore (-incoming from it) ${qtick_ms:-?} ms to the next tick"
	rm -f "$qfile"
done

# live migration, idle and busy, cvisor then QEMU
for load in idle busy; do
	api=$TMPDIR/m.sock
	log=$TMPDIR/m-$load.log
	shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 256M --api-socket "$api" \
		--cmdline "console=ttyS0 mode=shell"
	[ $load = busy ] && shell_run "(while :; do dd if=/dev/zero of=/dev/shm/churn bs=1M count=32 conv=notrunc 2>/dev/null; done) &" >/dev/null
	"$CVISOR" run --incoming tcp:127.0.0.1:7100 --serial none >"$TMPDIR/md.log" 2>&1 &
	dst=$!
	sleep 1
	"$CVISOR" ctl --api-socket "$api" migrate tcp:127.0.0.1:7100 >/dev/null || fail "cvisor migrate"
	wait_vm 300 || fail "cvisor source did not finish migrating"
	exec 3>&-
	m=$(grep -o 'migrated to .*' "$log" | tail -n1)
	tot=$(echo "$m" | grep -o 'total [0-9]*' | awk '{ print $2 }')
	down=$(echo "$m" | grep -o 'downtime [0-9]*' | awk '{ print $2 }')
	echo "cvisor migrate_${load}_total_ms ${tot:-nan}" >>"$res"
	echo "cvisor migrate_${load}_downtime_ms ${down:-nan}" >>"$res"
	echo "  cvisor $load: $m"
	kill $dst 2>/dev/null || true
	wait $dst 2>/dev/null || true

	q="$QEMU -M microvm -accel kvm -cpu host -smp 1 -m 256 -nographic -no-reboot -nodefaults -serial stdio"
	VMM_CMD="$q -monitor unix:$TMPDIR/qs.mon,server,nowait"
	qlog=$TMPDIR/q-$load.log
	shell_start "$qlog" -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 mode=shell"
	[ $load = busy ] && shell_run "(while :; do dd if=/dev/zero of=/dev/shm/churn bs=1M count=32 conv=notrunc 2>/dev/null; done) &" >/dev/null
	$q -monitor unix:$TMPDIR/qd.mon,server,nowait -kernel "$KERNEL" -initrd "$INITRD" \
		-append "console=ttyS0 mode=shell" -incoming tcp:127.0.0.1:7101 </dev/null >"$TMPDIR/qd.log" 2>&1 &
	qd=$!
	sleep 2
	unixcmd "$TMPDIR/qs.mon" "migrate_set_parameter downtime-limit 50" >/dev/null
	unixcmd "$TMPDIR/qs.mon" "migrate -d tcp:127.0.0.1:7101" >/dev/null
	i=0
	info=
	while [ $i -lt 600 ]; do
		info=$(unixcmd "$TMPDIR/qs.mon" "info migrate" 500 | tr -d '\r')
		echo "$info" | grep -q -E "Migration status: (completed|failed)" && break
		sleep 0.5
		i=$((i + 1))
	done
	tot=$(echo "$info" | grep -o 'total time: [0-9]*' | awk '{ print $3 }')
	down=$(echo "$info" | grep -o 'downtime: [0-9]*' | awk '{ print $2 }')
	echo "qemu migrate_${load}_total_ms ${tot:-nan}" >>"$res"
	echo "qemu migrate_${load}_downtime_ms ${down:-nan}" >>"$res"
	echo "  qemu $load: $(echo "$info" | grep -E 'status|total time|downtime' | tr '\n' ' ')"
	unixcmd "$TMPDIR/qs.mon" "quit" >/dev/null 2>&1 || true
	unixcmd "$TMPDIR/qd.mon" "quit" >/dev/null 2>&1 || true
	stop_vm
	exec 3>&-
	kill $qd 2>/dev/null || true
	wait $qd 2>/dev/null || true
	VMM_CMD=
done

echo
echo "BENCH state (rig figures; 1 vCPU; loopback migration; QEMU -M microvm with downtime-limit 50 ms)"
printf 'BENCH %-32s %10s %10s %7s\n' measure cvisor qemu ratio
for m in snapshot_256_ms snapshot_1024_ms restore_vmm_256_ms restore_vmm_1024_ms restore_tick_256_ms \
	restore_tick_1024_ms migrate_idle_total_ms migrate_idle_downtime_ms migrate_busy_total_ms \
	migrate_busy_downtime_ms; do
	c=$(grep "^cvisor $m " "$res" | awk '{ print $3 }' | head -n1)
	q=$(grep "^qemu $m " "$res" | awk '{ print $3 }' | head -n1)
	r=$(awk -v c="${c:-nan}" -v q="${q:-nan}" 'BEGIN { if (q + 0 > 0 && c != "nan") printf "%.2f", c / q; else print "-" }')
	printf 'BENCH %-32s %10s %10s %7s\n' "$m" "${c:--}" "${q:--}" "$r"
done
