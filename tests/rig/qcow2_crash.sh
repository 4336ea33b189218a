#!/bin/sh
# Crash consistency of qcow2 under a real guest, 20 times: a guest writes and fsyncs
# files on ext4 in a qcow2 overlay; cvisor is killed with SIGKILL at a different
# moment each round. After every kill `cvisor img check` finds no corruption (leaked
# clusters are allowed), nor does `qemu-img check`, and the next boot finds every
# file the guest saw synced.
# timeout: 900
# rig-cost: 240
# (It runs in make test since the rig's L1 has transparent huge pages off; with
# them, the emulated CPU used to give out after 4-5 rounds, see tools/rig/l1-init.)
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
ROUNDS=${QCOW2_CRASH_ROUNDS:-20}
cd "$TMPDIR"
cp "$DISK_EXT4" base.raw
"$CVISOR" img create -q -f qcow2 -b base.raw -F raw ov.qcow2 || fail "img create"
boot="--kernel $KERNEL --initrd $INITRD --memory 256M --disk path=$TMPDIR/ov.qcow2"
: >synced.all
round=0
leaks=0
# where a round is, with L1's uptime: when the rig dies mid-round, the last of
# these says in which step
step() { echo "rig: round $round: $* (L1 uptime $(cut -d' ' -f1 /proc/uptime) s)"; }
while [ $round -lt "$ROUNDS" ]; do
	round=$((round + 1))
	log=$TMPDIR/r$round.log
	shell_start "$log" $boot --cmdline "console=ttyS0 mode=shell"
	# (kernel messages off the console: they would cut into the output parsed here)
	shell_run "dmesg -n 1; mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" 120 >/dev/null
	[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "round $round: mount failed"; }
	step "booted and mounted"
	# every file synced in an earlier round must be there, intact
	# (one listing of all checksums: a command per file costs a console round trip each)
	if [ -s synced.all ]; then
		shell_run "cd /mnt && md5sum r[0-9]*_[0-9]*; cd /" 300 | awk 'NF == 2 { print $2, $1 }' >sums.now
		while read -r f sum; do
			got=$(awk -v f="$f" '$1 == f { print $2 }' sums.now)
			[ "$got" = "$sum" ] || { show_console "$log"; fail "round $round: $f has md5 '$got', synced $sum"; }
		done <synced.all
		step "$(wc -l <synced.all) files read back intact"
	fi
	# write and fsync until killed: after 1..5 files, at a varying point
	want=$((round % 5 + 1))
	printf '%s\n' "i=0; while :; do i=\$((i+1)); dd if=/dev/urandom of=/mnt/r${round}_\$i bs=64k count=4 conv=fsync 2>/dev/null; sync; echo \"SYNCED r${round}_\$i \$(md5sum </mnt/r${round}_\$i | cut -c1-32)\"; done" >&3
	wait_for "$log" "^SYNCED r${round}_$want " 300 || fail "round $round: no progress"
	sleep "0.$((round * 37 % 10))"
	step "writing; kill -9"
	kill -KILL "$CVISOR_PID"
	wait "$CVISOR_PID" 2>/dev/null || true
	step "cvisor gone"
	CVISOR_PID=
	exec 3>&-
	tr -d '\r' <"$log" | awk '/^SYNCED r[0-9]+_[0-9]+ [0-9a-f]+$/ && length($3) == 32 { print $2, $3 }' >>synced.all
	rc=0
	"$CVISOR" img check ov.qcow2 >check.out 2>&1 || rc=$?
	case $rc in
	0) ;;
	3) leaks=$((leaks + 1)) ;;
	*) cat check.out; fail "round $round: img check exited $rc (corruption)" ;;
	esac
	# and the reference peer agrees (0 clean, 3 leaks only)
	if command -v qemu-img >/dev/null; then
		rc=0
		qemu-img check ov.qcow2 >qcheck.out 2>&1 || rc=$?
		[ $rc = 0 ] || [ $rc = 3 ] || { cat qcheck.out; fail "round $round: qemu-img check exited $rc"; }
	fi
	check "round $round: killed after $(grep -c "^r${round}_" synced.all) synced files; cvisor and qemu-img checks pass"
done
check "$ROUNDS kill -9 rounds: no corruption ($leaks with leaked clusters only), $(wc -l <synced.all) synced files all intact"
