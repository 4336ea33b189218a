#!/bin/sh
# virtio-rng over PCI: the stock kernel finds the device and reads entropy from it.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "--rng: the guest sees a virtio-rng PCI device and /dev/hwrng gives bytes"
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --rng --cmdline "console=ttyS0 mode=shell"
out=$(shell_run "cat /sys/class/misc/hw_random/rng_current")
echo "$out" | grep -q virtio_rng || { show_console "$log"; fail "rng_current is '$out', not virtio_rng"; }
check "rng_current: $out"
n=$(shell_run "head -c 4096 /dev/hwrng | wc -c" 60 | tr -dc 0-9)
[ "$n" = 4096 ] || { show_console "$log"; fail "read $n bytes from /dev/hwrng, expected 4096"; }
check "read 4096 bytes from /dev/hwrng"
# bytes must not be constant: count distinct byte values in 4 KiB
d=$(shell_run "head -c 4096 /dev/hwrng | od -An -v -tu1 | tr -s ' ' '\n' | sort -u | wc -l" 60 | tr -dc 0-9)
[ "$d" -gt 200 ] || { show_console "$log"; fail "only $d distinct byte values in 4 KiB"; }
check "$d distinct byte values in 4 KiB"
shell_run "dmesg | grep -i -e pci -e virtio -e ACPI | head -60"
shell_poweroff
