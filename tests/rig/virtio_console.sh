#!/bin/sh
# virtio-console: with --console virtio the guest's console is hvc0 on the serial
# backend (stdio here, stdin a FIFO): early output still comes through ttyS0, the shell
# runs on hvc0, typed input reaches it through the virtio console and not the UART, and
# `stty size` shows the size cvisor gives when stdin is not a terminal: 80x24.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log

check "--console virtio, console=ttyS0 console=hvc0: a shell on hvc0 driven over stdin"
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --console virtio \
	--cmdline "console=ttyS0 console=hvc0 mode=shell"
grep -q 'Linux version' "$log" || { show_console "$log"; fail "no early boot output (ttyS0)"; }
check "early boot output arrived through ttyS0"

active=$(shell_run "cat /sys/class/tty/console/active" | tr -d '\r')
case " $active " in *" hvc0 "*) ;; *) show_console "$log"; fail "console/active is '$active', not hvc0" ;; esac
[ "${active##* }" = hvc0 ] || { show_console "$log"; fail "hvc0 is not /dev/console in '$active'"; }
check "/sys/class/tty/console/active: $active"

t=$(shell_run "tty" | tr -d '\r')
[ "$t" = /dev/hvc0 ] || { show_console "$log"; fail "the shell's terminal is '$t', not /dev/hvc0"; }
check "the shell's terminal is $t"

size=$(shell_run "stty size" | tr -d '\r')
[ "$size" = "24 80" ] || { show_console "$log"; fail "stty size says '$size', expected '24 80'"; }
check "stty size: $size (rows cols: cvisor's default when stdin is not a terminal)"

# Input took the virtio path: the UART (held open by init) received nothing.
ser=$(shell_run "grep '^0:' /proc/tty/driver/serial" | tr -d '\r')
echo "$ser" | grep -q ' rx:0' || { show_console "$log"; fail "the UART received input: $ser"; }
check "ttyS0 received nothing: $ser"

# Volume both ways: a long typed line, and 3000 lines of output.
long=$(printf '%0700d' 0 | tr 0 x)
n=$(shell_run "echo $long | wc -c" | tr -dc 0-9)
[ "$n" = 701 ] || { show_console "$log"; fail "a 700-character line arrived as $n bytes"; }
check "a 700-character typed line arrived whole"
lines=$(shell_run "seq 1 3000" 120 | tr -d '\r')
[ "$(echo "$lines" | wc -l)" = 3000 ] && [ "$(echo "$lines" | tail -n1)" = 3000 ] ||
	{ show_console "$log"; fail "seq 1 3000 printed $(echo "$lines" | wc -l) lines"; }
check "3000 lines of output arrived in order"
shell_poweroff
