#!/bin/sh
# Snapshots with disk_overlay: a guest writes A to its qcow2 disk (block 100) and
# syncs; a disk_overlay snapshot that cannot create one of its two overlays (a full
# file system) fails with one line and leaves both disks as they were; then one
# succeeds, and the guest writes B (block 100) and C (block 200) to the overlay. The
# frozen base holds A, the overlay chain B and C, every image checks clean. Restoring
# the snapshot twice gives a guest that reads A and zeroes both times, writes to a
# fresh overlay of its own, and never changes the base.
# timeout: 600
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
TMPDIR=$(readlink -f "$TMPDIR") # overlays are named by their real path
cd "$TMPDIR"
boot="--kernel $KERNEL --initrd $INITRD --memory 256M"
api=$TMPDIR/api.sock
snap=$TMPDIR/snap

# pat X: 4 KiB of X; sum_of: md5 of stdin
pat() { awk -v c="$1" 'BEGIN { for (i = 0; i < 1024; i++) printf "%s%s%s%s", c, c, c, c }'; }
sum_of() { md5sum | cut -c1-32; }
sumA=$(pat A | sum_of)
sumB=$(pat B | sum_of)
sumC=$(pat C | sum_of)
sumD=$(pat D | sum_of)
sum0=$(head -c 4096 /dev/zero | sum_of)

# guest_write BLOCK X: the guest writes 4 KiB of X at 4 KiB block BLOCK of vda, synced
guest_write() {
	shell_run "awk 'BEGIN { for (i = 0; i < 1024; i++) printf \"$2$2$2$2\" }' |
		dd of=/dev/vda bs=4096 seek=$1 conv=fsync 2>/dev/null && sync" 60 >/dev/null
	[ "$(shell_rc)" = 0 ] || { show_console "$_slog"; fail "guest write of $2 at block $1 failed"; }
}
# guest_sum BLOCK: md5 of the block as the guest reads it from the disk (caches dropped)
guest_sum() {
	shell_run "sync; echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/vda bs=4096 skip=$1 count=1 \
		2>/dev/null | md5sum | cut -c1-32" 60 | grep -o '^[0-9a-f]\{32\}$' | tail -n1
}
# image_sum IMAGE BLOCK: md5 of the block in the image (through its backing chain)
image_sum() {
	rm -f "$TMPDIR/conv.raw"
	"$CVISOR" img convert -O raw "$1" "$TMPDIR/conv.raw" >/dev/null || fail "img convert $1"
	dd if="$TMPDIR/conv.raw" bs=4096 skip="$2" count=1 2>/dev/null | sum_of
}
# img_clean IMAGE: `cvisor img check` finds nothing
img_clean() {
	"$CVISOR" img check "$1" >"$TMPDIR/check.out" 2>&1 || { cat "$TMPDIR/check.out"; fail "img check $1"; }
}
# expect_sum WANT GOT WHAT
expect_sum() { [ "$2" = "$1" ] || { show_console "$_slog"; fail "$3: md5 $2, want $1"; }; }
# disk_opts SOCKET: the disks' options from GET /v1/vm
disk_opts() { "$CVISOR" ctl --api-socket "$1" info | grep '"option"' | grep -o 'path=[^,"]*'; }
# overlays: the overlay files of disk.qcow2 and disk2.qcow2
overlays() { ls "$TMPDIR"/disk.[0-9]*.qcow2 "$TMPDIR"/full/disk2.[0-9]*.qcow2 2>/dev/null || true; }

check "qcow2 disks: disk.qcow2 (written) and full/disk2.qcow2 (on a small tmpfs)"
"$CVISOR" img create -q -f qcow2 disk.qcow2 64M || fail "img create"
mkdir -p full
have_tmpfs=0
if mount -t tmpfs -o size=2M tmpfs "$TMPDIR/full" 2>/dev/null; then have_tmpfs=1; fi
"$CVISOR" img create -q -f qcow2 full/disk2.qcow2 16M || fail "img create disk2"

log=$TMPDIR/o1.log
shell_start "$log" $boot --disk "path=$TMPDIR/disk.qcow2" --disk "path=$TMPDIR/full/disk2.qcow2" \
	--api-socket "$api" --cmdline "console=ttyS0 mode=shell"
guest_write 100 A
expect_sum "$sumA" "$(guest_sum 100)" "the guest reads back A"
check "the guest wrote A at block 100 and synced"

if [ $have_tmpfs = 1 ]; then
	dd if=/dev/zero of=full/fill bs=4096 2>/dev/null || true
	RC=0; out=$("$CVISOR" ctl --api-socket "$api" snapshot "$TMPDIR/bad" --disk-overlay 2>&1) || RC=$?
	[ "$RC" = 1 ] && [ "$(echo "$out" | wc -l)" = 1 ] || { echo "$out"; fail "snapshot on a full disk: exit $RC"; }
	check "a disk_overlay snapshot with a full file system fails: $out"
	[ -z "$(overlays)" ] || { overlays; fail "overlay files were left behind"; }
	[ ! -f "$TMPDIR/bad/state.bin" ] || fail "a state file was written for a failed snapshot"
	disk_opts "$api" | grep -q "path=$TMPDIR/disk.qcow2\$" || { disk_opts "$api"; fail "disk 0 moved"; }
	guest_write 300 D
	rm -f full/fill
	check "nothing left behind, the VM still on its disks and writing"
else
	say "no tmpfs mount here: the full-disk case is skipped"
fi

t0=$(date +%s)
out=$("$CVISOR" ctl --api-socket "$api" snapshot "$snap" --disk-overlay 2>&1) ||
	{ echo "$out"; show_console "$log"; fail "disk_overlay snapshot failed"; }
ovl=$(ls "$TMPDIR"/disk.[0-9]*.qcow2)
[ "$(echo "$ovl" | wc -l)" = 1 ] || fail "overlays of disk.qcow2: $ovl"
check "snapshot taken in $(($(date +%s) - t0)) s; the VM goes on on $(basename "$ovl")"
disk_opts "$api" | grep -q "path=$ovl\$" || { disk_opts "$api"; fail "GET /v1/vm does not name the overlay"; }
check "GET /v1/vm names the overlay"
RC=0; "$CVISOR" img write disk.qcow2 0 4096 2>"$TMPDIR/err" || RC=$?
[ "$RC" != 0 ] && grep -q "in use" "$TMPDIR/err" || { cat "$TMPDIR/err"; fail "a writer of the frozen base: exit $RC"; }
check "the frozen base refuses writers while the VM runs on it"
guest_write 100 B
guest_write 200 C
expect_sum "$sumB" "$(guest_sum 100)" "the guest reads back B"
"$CVISOR" ctl --api-socket "$api" stop >/dev/null
wait_vm 30 || fail "cvisor did not stop"
exec 3>&-
check "the guest wrote B (block 100) and C (block 200); stopped"

for img in disk.qcow2 full/disk2.qcow2 $(overlays); do img_clean "$img"; done
check "img check: every image clean"
"$CVISOR" img info "$ovl" >"$TMPDIR/info"
grep -q "^backing file: disk.qcow2" "$TMPDIR/info" && grep -q "backing file format: qcow2" "$TMPDIR/info" ||
	{ cat "$TMPDIR/info"; fail "the overlay's backing file"; }
expect_sum "$sumA" "$(image_sum disk.qcow2 100)" "base, block 100"
expect_sum "$sum0" "$(image_sum disk.qcow2 200)" "base, block 200"
expect_sum "$sumB" "$(image_sum "$ovl" 100)" "overlay, block 100"
expect_sum "$sumC" "$(image_sum "$ovl" 200)" "overlay, block 200"
if [ $have_tmpfs = 1 ]; then
	expect_sum "$sumD" "$(image_sum disk.qcow2 300)" "base, block 300 (written after the failed snapshot)"
fi
base_md5=$(md5sum <disk.qcow2)
check "the base holds A, the overlay chain B and C"

shell_start_restore() {
	_slog=$1
	shift
	rm -f "$TMPDIR/stdin.r"
	mkfifo "$TMPDIR/stdin.r"
	VM_STDIN=$TMPDIR/stdin.r
	start_vm "$_slog" "$@"
	exec 3>"$TMPDIR/stdin.r"
	echo 0 >"$TMPDIR/shell.n"
}
seen=$ovl
for round in 1 2; do
	log=$TMPDIR/r$round.log
	api2=$TMPDIR/api-r$round.sock
	t0=$(date +%s)
	shell_start_restore "$log" --restore "$snap" --api-socket "$api2"
	expect_sum "$sumA" "$(guest_sum 100)" "restore $round, block 100"
	expect_sum "$sum0" "$(guest_sum 200)" "restore $round, block 200"
	check "restore $round: the guest reads A and zeroes (the disk of the snapshot) after $(($(date +%s) - t0)) s"
	mine=$(disk_opts "$api2" | head -n1 | sed 's/^path=//')
	case $mine in "$TMPDIR"/disk.[0-9]*.qcow2) ;; *) fail "restore $round runs on $mine" ;; esac
	for s in $seen; do [ "$s" != "$mine" ] || fail "restore $round reuses $mine"; done
	seen="$seen $mine"
	guest_write 100 D
	expect_sum "$sumD" "$(guest_sum 100)" "restore $round writes"
	check "restore $round writes to a fresh overlay $(basename "$mine")"
	shell_poweroff
	[ "$(md5sum <disk.qcow2)" = "$base_md5" ] || fail "restore $round changed the base"
	expect_sum "$sumD" "$(image_sum "$mine" 100)" "restore $round's overlay"
done
for img in disk.qcow2 full/disk2.qcow2 $(overlays); do img_clean "$img"; done
check "the base never changed; every image checks clean ($(overlays | wc -l) overlays)"
if [ $have_tmpfs = 1 ]; then umount "$TMPDIR/full" 2>/dev/null || true; fi
