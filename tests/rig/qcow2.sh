#!/bin/sh
# qcow2 through virtio-blk: a guest writes ext4 on a qcow2 overlay over a raw base
# (made in L1 with `cvisor img create`); the overlay checks clean, the base is
# untouched, a second VM (format detected, read-only) reads the data back; and
# after kill -9 of a VM whose guest writes and fsyncs, the image has no
# corruption and every file the guest saw synced is intact; a live migration
# hands the overlay over (the destination reloads its metadata) and the guest
# goes on writing there.
# timeout: 900
# rig-cost: 60
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
cd "$TMPDIR"
cp "$DISK_EXT4" base.raw
base_sum=$(md5sum <base.raw)
boot="--kernel $KERNEL --initrd $INITRD --memory 256M"

# img_check: `cvisor img check` finds no corruption (leaks allowed when $1 = leaks-ok)
img_check() {
	_rc=0
	"$CVISOR" img check overlay.qcow2 >"$TMPDIR/check.out" 2>&1 || _rc=$?
	if [ "$_rc" = 0 ] || { [ "${1:-}" = leaks-ok ] && [ "$_rc" = 3 ]; }; then
		check "img check: exit $_rc ($(head -n1 "$TMPDIR/check.out"))"
	else
		cat "$TMPDIR/check.out"
		fail "img check exited $_rc"
	fi
	qemu_check "${1:-}" overlay.qcow2
}

# qemu_check [leaks-ok] IMAGE: the reference peer agrees (qemu-img check: 0 clean,
# 3 leaked clusters only); skipped where there is no qemu-img
qemu_check() {
	command -v qemu-img >/dev/null || return 0
	_rc=0
	qemu-img check "$2" >"$TMPDIR/qcheck.out" 2>&1 || _rc=$?
	if [ "$_rc" = 0 ] || { [ "$1" = leaks-ok ] && [ "$_rc" = 3 ]; }; then
		check "qemu-img check $2: exit $_rc ($(grep -m1 -e 'No errors' -e 'leaked' "$TMPDIR/qcheck.out" || true))"
	else
		cat "$TMPDIR/qcheck.out"
		fail "qemu-img check $2 exited $_rc"
	fi
}

check "cvisor img create: a qcow2 overlay over the raw ext4 image"
"$CVISOR" img create -q -f qcow2 -b base.raw -F raw overlay.qcow2 ||
	fail "img create failed"
"$CVISOR" img info overlay.qcow2 | grep -q 'backing file format: raw' ||
	{ "$CVISOR" img info overlay.qcow2; fail "img info does not show the raw backing file"; }
img_check

log=$TMPDIR/q1.log
check "the guest mounts the overlay (format=qcow2), writes 8 MiB and 200 files, syncs"
# and a second disk, a qcow2 overlay over a 16 MiB raw base, gets a byte pattern
dd if=/dev/zero of=pat.raw bs=1M count=16 2>/dev/null
"$CVISOR" img create -q -f qcow2 -b pat.raw -F raw pat.qcow2 || fail "img create (pattern disk)"
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2,format=qcow2" \
	--disk "path=$TMPDIR/pat.qcow2" --cmdline "console=ttyS0 mode=shell"
shell_run "dd if=/dev/zero bs=64k count=24 2>/dev/null | tr '\\000' '\\245' | dd of=/dev/vdb bs=64k seek=16 conv=fsync 2>/dev/null" 120 >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "writing the pattern to vdb failed"; }
shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "mount failed"; }
sum1=$(shell_run "dd if=/dev/urandom of=/mnt/data bs=1M count=8 2>/dev/null && sync &&
	md5sum /mnt/data | cut -d' ' -f1" 180 | grep -o '^[0-9a-f]\{32\}$' | tail -n1)
[ "$(shell_rc)" = 0 ] && [ ${#sum1} = 32 ] || { show_console "$log"; fail "write failed: $sum1"; }
shell_run "mkdir /mnt/small && i=0 && while [ \$i -lt 200 ]; do echo file \$i >/mnt/small/f\$i;
	i=\$((i + 1)); done && dd if=/dev/urandom of=/mnt/gone bs=1M count=2 2>/dev/null && sync" 180 \
	>/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "writing small files failed"; }
check "written: md5 $sum1; now a file removed and the free space trimmed (discard)"
trim=$(shell_run "rm /mnt/gone && sync && (fstrim -v /mnt 2>&1 || echo no fstrim)" 120)
check "fstrim: $trim"
shell_run "umount /mnt" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "umount failed"; }
check "a second writer of the overlay is refused while the VM runs"
RC=0; "$CVISOR" img write overlay.qcow2 0 4096 2>"$TMPDIR/err" || RC=$?
[ "$RC" != 0 ] && grep -q "in use" "$TMPDIR/err" || { cat "$TMPDIR/err"; fail "second writer: exit $RC"; }
shell_poweroff

img_check
[ "$(md5sum <base.raw)" = "$base_sum" ] || fail "the raw base changed"
check "the base is untouched"
if command -v qemu-io >/dev/null; then
	qemu_check "" pat.qcow2
	out=$(qemu-io -r -f qcow2 -c "read -P 0xa5 1M 1536K" -c "read -P 0 0 1M" \
		-c "read -P 0 2560K 13824K" pat.qcow2 2>&1) || { echo "$out"; fail "qemu-io read"; }
	echo "$out" | grep -q -i -e "fail" -e "pattern verification" && { echo "$out"; fail "qemu-io: the guest's pattern is not there"; }
	check "qemu-io reads the guest's pattern (0xa5 at 1 MiB, 1.5 MiB) through the overlay, zeros around it"
	[ "$(md5sum <pat.raw | cut -c1-32)" = "$(head -c 16777216 /dev/zero | md5sum | cut -c1-32)" ] ||
		fail "the pattern disk's raw base changed"
fi

log=$TMPDIR/q2.log
check "a second VM (format detected, read-only) reads the data back"
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2,readonly=on" \
	--cmdline "console=ttyS0 mode=shell"
shell_run "mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "read-only mount failed"; }
sum2=$(shell_run "md5sum /mnt/data | cut -d' ' -f1" 120 | grep -o '^[0-9a-f]\{32\}$' | tail -n1)
[ "$sum2" = "$sum1" ] || { show_console "$log"; fail "read back $sum2, written $sum1"; }
n=$(shell_run "cat /mnt/small/* | wc -l" | grep -o '^ *[0-9]*$' | tr -d ' ' | tail -n1)
[ "$n" = 200 ] || { show_console "$log"; fail "$n of 200 small files read back"; }
[ "$(shell_run 'cat /mnt/small/f123')" = "file 123" ] || { show_console "$log"; fail "f123"; }
check "md5 matches, 200 small files there"
shell_run "umount /mnt" >/dev/null
shell_poweroff

log=$TMPDIR/q3.log
check "kill -9 while the guest writes and fsyncs"
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2" --cmdline "console=ttyS0 mode=shell"
shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "mount failed"; }
# every file is written and fsynced before its md5 is printed
printf '%s\n' 'i=0; while :; do i=$((i+1)); dd if=/dev/urandom of=/mnt/c$i bs=64k count=8 conv=fsync 2>/dev/null; sync; echo "SYNCED $i $(md5sum </mnt/c$i | cut -c1-32)"; done' >&3
wait_for "$log" "^SYNCED 4 " 300 || fail "the guest did not get 4 files written"
kill -KILL "$CVISOR_PID"
wait "$CVISOR_PID" 2>/dev/null || true
CVISOR_PID=
exec 3>&-
synced=$(tr -d '\r' <"$log" | grep -c '^SYNCED [0-9]* [0-9a-f]\{32\}$' || true)
check "killed after $synced synced files"
img_check leaks-ok
[ "$(md5sum <base.raw)" = "$base_sum" ] || fail "the raw base changed"

log=$TMPDIR/q4.log
check "after the crash: the journal replays and every synced file is intact"
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2,format=qcow2" \
	--cmdline "console=ttyS0 mode=shell"
shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" 120 >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "mount after the crash failed"; }
tr -d '\r' <"$TMPDIR/q3.log" | grep '^SYNCED [0-9]* [0-9a-f]\{32\}$' >"$TMPDIR/synced"
while read -r _ i sum; do
	got=$(shell_run "md5sum </mnt/c$i | cut -c1-32" 60 | grep -o '^[0-9a-f]\{32\}$' | tail -n1)
	[ "$got" = "$sum" ] || { show_console "$log"; fail "file c$i: md5 $got, synced $sum"; }
done <"$TMPDIR/synced"
[ "$(shell_run "md5sum /mnt/data | cut -d' ' -f1" 120 | grep -o '^[0-9a-f]\{32\}$' | tail -n1)" = "$sum1" ] ||
	fail "/mnt/data changed"
shell_run "umount /mnt" >/dev/null
shell_poweroff
img_check leaks-ok
check "all synced files intact"

log=$TMPDIR/q5.log
api=$TMPDIR/api.sock
check "live migration: the guest writes on the source, then on the destination"
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2,format=qcow2" --api-socket "$api" \
	--cmdline "console=ttyS0 mode=shell"
before=$(shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && dd if=/dev/urandom of=/mnt/before bs=64k count=16 conv=fsync 2>/dev/null && md5sum </mnt/before | cut -c1-32" 120 |
	grep -o '^[0-9a-f]\{32\}$' | tail -n1)
[ ${#before} = 32 ] || { show_console "$log"; fail "writing on the source failed"; }
src_pid=$CVISOR_PID
dlog=$TMPDIR/q5d.log
rm -f "$TMPDIR/dstin"
mkfifo "$TMPDIR/dstin"
"$CVISOR" run --incoming tcp:127.0.0.1:7013 <"$TMPDIR/dstin" >"$dlog" 2>&1 &
dst=$!
exec 4>"$TMPDIR/dstin"
sleep 1
"$CVISOR" ctl --api-socket "$api" migrate tcp:127.0.0.1:7013 >/dev/null || fail "migrate request refused"
i=0
while alive "$src_pid" && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
alive "$src_pid" && { show_console "$log"; fail "the source still runs 120 s after migrate"; }
RC=0; wait "$src_pid" || RC=$?
CVISOR_PID=
exec 3>&-
[ "$RC" = 0 ] || { show_console "$log"; fail "the source exited $RC after migrating"; }
printf '%s\n' 'dd if=/dev/urandom of=/mnt/after bs=64k count=32 conv=fsync 2>/dev/null; sync; echo "AFTER $(md5sum </mnt/after | cut -c1-32) $(md5sum </mnt/before | cut -c1-32)"' >&4
wait_for "$dlog" "^AFTER " 120 || fail "the destination cannot write the overlay"
after=$(tr -d '\r' <"$dlog" | sed -n 's/^AFTER \([0-9a-f]*\) \([0-9a-f]*\)$/\1/p' | tail -n1)
seen=$(tr -d '\r' <"$dlog" | sed -n 's/^AFTER \([0-9a-f]*\) \([0-9a-f]*\)$/\2/p' | tail -n1)
[ "$seen" = "$before" ] || { show_console "$dlog"; fail "the destination reads $seen, the source wrote $before"; }
check "the destination reads what the source wrote and writes more (md5 $after)"
printf 'umount /mnt; poweroff -f\n' >&4
i=0
while alive $dst && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
drc=0; wait $dst || drc=$?
exec 4>&-
[ "$drc" = 0 ] || { show_console "$dlog"; fail "the destination exited $drc"; }
img_check

log=$TMPDIR/q6.log
shell_start "$log" $boot --disk "path=$TMPDIR/overlay.qcow2,readonly=on" --cmdline "console=ttyS0 mode=shell"
shell_run "mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt" >/dev/null
[ "$(shell_run "md5sum </mnt/after | cut -c1-32; md5sum </mnt/before | cut -c1-32" 60 |
	grep '^[0-9a-f]\{32\}$' | tr '\n' ' ')" = "$after $before " ] ||
	{ show_console "$log"; fail "after the migration the files read back differently"; }
shell_poweroff
[ "$(md5sum <base.raw)" = "$base_sum" ] || fail "the raw base changed"
check "both files intact in a new VM; the base untouched"
