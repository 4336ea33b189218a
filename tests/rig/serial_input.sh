#!/bin/sh
# The serial console takes input: type into the guest's shell through cvisor's stdin.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log
fifo=$TMPDIR/stdin
mkfifo "$fifo"

check "mode=shell, --serial stdio, stdin a FIFO: a typed command runs, 'poweroff -f' ends it with exit 0"
VM_STDIN=$fifo
start_vm "$log" --kernel "$KERNEL" --initrd "$INITRD" --serial stdio \
	--cmdline "console=ttyS0 mode=shell"
exec 3>"$fifo"   # hold the writing end open for the whole test
wait_for "$log" 'cvisor-guest# ' 200 || fail "no shell prompt"
check "the shell prompt appeared"
printf 'echo hello-$((6*7))\n' >&3
wait_for "$log" 'hello-42' 30 || fail "the command typed did not run"
check "typed 'echo hello-\$((6*7))', the console shows hello-42"
printf 'poweroff -f\n' >&3
wait_vm 60 || { show_console "$log"; fail "cvisor did not exit after 'poweroff -f'"; }
exec 3>&-
expect_rc 0 "$log"
