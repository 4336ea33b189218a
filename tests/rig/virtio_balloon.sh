#!/bin/sh
# virtio-balloon: memory the guest gives up goes back to the host (cvisor's RSS drops),
# and comes back to the guest when the balloon deflates.
#  1. --memory 512M --balloon=target=362M: the driver inflates at boot (guest MemTotal
#     drops to ~150 MB). rmmod virtio_balloon deflates it; the guest then writes 300 MB
#     into a tmpfs (cvisor's RSS grows) and deletes it. insmod inflates again: the guest
#     hands over its free pages, cvisor drops them: RSS must fall by >= 100 MB. rmmod
#     again: the guest can write 300 MB once more.
#  2. --balloon=free_page_reporting=on (no target): after the guest writes and deletes
#     300 MB, free page reporting gives the pages back: RSS falls by >= 100 MB.
# timeout: 600
# rig-cost: 55
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"

rss_mb() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$CVISOR_PID/status"; }
memtotal_mb() { shell_run "awk '/^MemTotal:/ { print int(\$2 / 1024) }' /proc/meminfo" | tr -dc 0-9; }

# wait_memtotal OP MB SECONDS: poll the guest's MemTotal until it is OP (-le/-ge) MB.
wait_memtotal() {
	_end=$(($(date +%s) + $3))
	while :; do
		_m=$(memtotal_mb)
		[ "$_m" "$1" "$2" ] && { echo "$_m"; return 0; }
		[ "$(date +%s)" -lt "$_end" ] || { echo "$_m"; return 1; }
		sleep 1
	done
}

# touch300: write 300 MB into a tmpfs in the guest and delete it; fails the test if dd fails.
touch300() {
	shell_run "mkdir -p /mnt; mount | grep -q ' /mnt ' || mount -t tmpfs -o size=400m tmpfs /mnt" >/dev/null
	shell_run "dd if=/dev/zero of=/mnt/x bs=1M count=300 2>&1 | tail -n1; ls -l /mnt/x" 180
	[ "$(shell_rc)" = 0 ] || { show_console "$_slog"; fail "the guest could not write 300 MB"; }
}

log=$TMPDIR/console.log
check "--balloon=target=362M on a 512M guest: inflate, deflate, inflate after use"
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 512M --cpus 1 \
	--balloon=target=362M --cmdline "console=ttyS0 mode=shell"
m=$(wait_memtotal -le 170 120) || { show_console "$log"; fail "the balloon did not inflate (MemTotal $m MB)"; }
check "inflated at boot: guest MemTotal $m MB, cvisor RSS $(rss_mb) MB"

shell_run "rmmod virtio_balloon" >/dev/null
m=$(wait_memtotal -ge 400 120) || { show_console "$log"; fail "rmmod did not deflate (MemTotal $m MB)"; }
check "deflated (rmmod): guest MemTotal $m MB"
touch300
r_used=$(rss_mb)
shell_run "rm /mnt/x" >/dev/null
check "the guest wrote 300 MB and deleted it: cvisor RSS $r_used MB"
[ "$r_used" -ge 300 ] || { show_console "$log"; fail "RSS $r_used MB after the guest used 300 MB?"; }

shell_run "insmod /lib/modules/virtio_balloon.ko" >/dev/null
m=$(wait_memtotal -le 170 120) || { show_console "$log"; fail "the balloon did not inflate again (MemTotal $m MB)"; }
sleep 1
r_infl=$(rss_mb)
check "inflated again: guest MemTotal $m MB, cvisor RSS $r_infl MB (was $r_used MB)"
[ $((r_used - r_infl)) -ge 100 ] ||
	{ show_console "$log"; fail "RSS fell by only $((r_used - r_infl)) MB (want >= 100)"; }
check "RSS fell by $((r_used - r_infl)) MB"

shell_run "rmmod virtio_balloon" >/dev/null
m=$(wait_memtotal -ge 400 120) || { show_console "$log"; fail "rmmod did not deflate (MemTotal $m MB)"; }
touch300
check "deflated: the guest wrote 300 MB again; cvisor RSS $(rss_mb) MB"
shell_run "rm /mnt/x; dmesg | grep -i balloon" || true
shell_poweroff

log=$TMPDIR/console2.log
rm -f "$TMPDIR/stdin.$$" # shell_start makes its FIFO again
check "--balloon=free_page_reporting=on: freed guest memory goes back to the host"
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --memory 512M --cpus 1 \
	--balloon=free_page_reporting=on --cmdline "console=ttyS0 mode=shell"
touch300
r_used=$(rss_mb)
shell_run "rm /mnt/x" >/dev/null
check "the guest wrote 300 MB and deleted it: cvisor RSS $r_used MB"
end=$(($(date +%s) + 60))
while r=$(rss_mb) && [ $((r_used - r)) -lt 100 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
[ $((r_used - r)) -ge 100 ] || { show_console "$log"; fail "RSS fell by only $((r_used - r)) MB in 60 s"; }
check "free page reporting: RSS fell from $r_used to $r MB"
shell_poweroff
