#!/bin/sh
# Bad usage and unusable input: exit status 2 and exactly one line on stderr.
# timeout: 120
set -eu
. "${RIG_LIB:-$(dirname "$0")/lib.sh}"
d=$TMPDIR
bad=0

# expect2 DESCRIPTION ARGS...: `cvisor ARGS` must exit 2 with one line on stderr.
expect2() {
	_what=$1
	shift
	_rc=0
	timeout 30 "$CVISOR" "$@" </dev/null >"$d/out" 2>"$d/err" || _rc=$?
	_n=$(wc -l <"$d/err")
	# A last line without a newline counts too.
	[ -s "$d/err" ] && [ -n "$(tail -c1 "$d/err")" ] && _n=$((_n + 1))
	if [ "$_rc" = 2 ] && [ "$_n" = 1 ]; then
		echo "ok:   $_what: exit 2, stderr: $(cat "$d/err")"
	else
		echo "FAIL: $_what: exit $_rc, $_n line(s) on stderr (want exit 2, 1 line)"
		echo "  cvisor $*"
		sed 's/^/  stderr: /' "$d/err"
		sed 's/^/  stdout: /' "$d/out" | head -n 20
		bad=$((bad + 1))
	fi
}

head -c 65536 /dev/urandom >"$d/garbage"
dd if=/dev/zero of="$d/big.initrd" bs=1M count=160 2>/dev/null
check "each bad input: exit 2 with exactly one line on stderr"
expect2 "missing kernel file" run --kernel "$d/nonexistent" --initrd "$INITRD" --cmdline console=ttyS0
expect2 "garbage kernel" run --kernel "$d/garbage" --initrd "$INITRD" --cmdline console=ttyS0
expect2 "missing initrd file" run --kernel "$KERNEL" --initrd "$d/nonexistent"
expect2 "160 MB initrd in 128M" run --kernel "$KERNEL" --initrd "$d/big.initrd" --memory 128M
expect2 "--memory 1M" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --memory 1M
expect2 "--memory 100000G" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --memory 100000G
expect2 "--memory garbage" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --memory lots
expect2 "--cpus 0" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --cpus 0
expect2 "--cpus 100000" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --cpus 100000
expect2 "unknown option" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --no-such-option
expect2 "--serial bogus" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0 --serial bogus
expect2 "no --kernel" run --cpus 1
expect2 "unknown command" no-such-command
export CVISOR_KVM_DEVICE=/nonexistent
expect2 "/dev/kvm missing (CVISOR_KVM_DEVICE=/nonexistent)" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline console=ttyS0
unset CVISOR_KVM_DEVICE
rm -f "$d/big.initrd" "$d/garbage"
[ $bad = 0 ] || fail "$bad case(s) wrong"
