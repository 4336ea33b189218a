#!/bin/sh
# virtio-blk on raw images: ext4 mounted, written, synced and seen again by a
# second VM; read-only disks; two disks; the image lock against a second writer.
# timeout: 600
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
: "${DISK_EXT4:?}"
d1=$TMPDIR/d1.img
d2=$TMPDIR/d2.img
cp "$DISK_EXT4" "$d1"
cp "$DISK_EXT4" "$d2"
boot="--kernel $KERNEL --initrd $INITRD --memory 256M"

log=$TMPDIR/c1.log
check "ext4 on virtio-blk: mount, write 8 MiB, sync; the serial number shows in sysfs"
shell_start "$log" $boot --disk "path=$d1,serial=disk-one" --cmdline "console=ttyS0 mode=shell"
[ "$(shell_run 'cat /sys/block/vda/serial')" = disk-one ] || { show_console "$log"; fail "serial"; }
shell_run "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "mount failed"; }
sum1=$(shell_run "dd if=/dev/urandom of=/mnt/data bs=1M count=8 2>/dev/null && sync && md5sum /mnt/data | cut -d' ' -f1" 120)
[ "$(shell_rc)" = 0 ] && [ ${#sum1} = 32 ] || { show_console "$log"; fail "write failed: $sum1"; }
shell_run "umount /mnt" >/dev/null
check "written, md5 $sum1"

check "a second cvisor on the same writable image is refused while the first runs"
RC=0; "$CVISOR" run $boot --disk "path=$d1" 2>"$TMPDIR/err" >/dev/null || RC=$?
[ "$RC" = 2 ] && [ "$(wc -l <"$TMPDIR/err")" = 1 ] && grep -q "in use" "$TMPDIR/err" ||
	{ cat "$TMPDIR/err"; fail "second writer: exit $RC"; }
check "refused: $(cat "$TMPDIR/err")"
shell_poweroff

log=$TMPDIR/c2.log
ro_before=$(md5sum <"$d1")
check "a new VM sees the data; a read-only disk refuses writes; two disks at once"
shell_start "$log" $boot --disk "path=$d1,readonly=on" --disk "path=$d2" --cmdline "console=ttyS0 mode=shell"
[ "$(shell_run 'cat /sys/block/vda/ro /sys/block/vdb/ro | tr -d "\n"')" = 10 ] ||
	{ show_console "$log"; fail "vda should be read-only and vdb writable"; }
check "the guest sees vda read-only, vdb writable"
shell_run "mkdir -p /mnt /mnt2 && mount -t ext4 -o ro /dev/vda /mnt && mount -t ext4 /dev/vdb /mnt2" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "mounting both disks failed"; }
sum2=$(shell_run "md5sum /mnt/data | cut -d' ' -f1" 60)
[ "$sum2" = "$sum1" ] || { show_console "$log"; fail "data read back $sum2, written $sum1"; }
check "data read back in a new VM: md5 matches"
shell_run "umount /mnt" >/dev/null
# past the guest kernel's own read-only flag, the device itself must refuse
shell_run "blockdev --setrw /dev/vda; dd if=/dev/zero of=/dev/vda bs=4096 seek=100 count=1 oflag=direct" 60
[ "$(shell_rc)" != 0 ] || { show_console "$log"; fail "a write to the read-only disk succeeded"; }
check "a direct write to the read-only disk fails in the guest"
shell_run "echo x > /mnt2/hello && sync && cat /mnt2/hello" >/dev/null
[ "$(shell_rc)" = 0 ] || { show_console "$log"; fail "writing the second disk failed"; }
check "the second disk takes writes"
shell_run "umount /mnt2" >/dev/null
shell_poweroff
[ "$(md5sum <"$d1")" = "$ro_before" ] || fail "the read-only image changed"
check "the read-only image is unchanged"
