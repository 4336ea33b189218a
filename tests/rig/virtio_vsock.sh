#!/bin/sh
# virtio-vsock through vhost-vsock: guest <-> L1 sockets both ways.
# timeout: 300
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
log=$TMPDIR/console.log
[ -c /dev/vhost-vsock ] || fail "/dev/vhost-vsock is missing in L1 (vhost_vsock module)"

check "--vsock cid=N with a CID below 3 is refused with exit 2"
RC=0; "$CVISOR" run --kernel "$KERNEL" --vsock cid=2 2>"$TMPDIR/err" || RC=$?
[ "$RC" = 2 ] && [ "$(wc -l <"$TMPDIR/err")" = 1 ] || { cat "$TMPDIR/err"; fail "exit $RC"; }
check "refused: $(cat "$TMPDIR/err")"

vsockt listen 5000 >"$TMPDIR/host-echo.log" 2>&1 &
echo_pid=$!
shell_start "$log" --kernel "$KERNEL" --initrd "$INITRD" --vsock cid=42 --memory 256M \
	--cmdline "console=ttyS0 mode=shell"
out=$(shell_run "vsockt send 2 5000 hello-from-guest" 60)
echo "$out" | grep -q "echo: hello-from-guest" || { show_console "$log"; fail "guest->host echo: '$out'"; }
check "guest -> host (CID 2, port 5000) echo: $out"

check "a second VM cannot take CID 42 while the first runs"
RC=0; "$CVISOR" run --kernel "$KERNEL" --initrd "$INITRD" --vsock cid=42 2>"$TMPDIR/err2" || RC=$?
[ "$RC" = 2 ] || { cat "$TMPDIR/err2"; fail "second VM with CID 42 exited $RC"; }
check "refused: $(cat "$TMPDIR/err2")"

shell_run "vsockt listen 6000 >/tmp/echo.log 2>&1 & true"
sleep 1
out=$(vsockt send 42 6000 hello-from-host) || { show_console "$log"; fail "host->guest connect failed"; }
echo "$out" | grep -q "echo: hello-from-host" || { show_console "$log"; fail "host->guest echo: '$out'"; }
check "host -> guest (CID 42, port 6000) echo: $out"
# (bounded: a stream that stalls shows the vCPUs' state and the console; it once ran
# into the whole test's timeout in a CI run)
rc=0
out=$(timeout 120 vsockt stream 42 6000 16) || rc=$?
[ "$rc" = 0 ] || { vcpu_state; show_console "$log"; fail "16 MiB stream (exit $rc): $out"; }
check "16 MiB round trip, checksums match: $out"
shell_poweroff
kill "$echo_pid" 2>/dev/null || true
