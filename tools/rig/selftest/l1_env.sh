#!/bin/sh
# Rig self-test: the environment a test gets (variables, files, /dev/kvm, modules).
# timeout: 60
set -eu
. "${RIG_LIB:-$(dirname "$0")/../../../tests/rig/lib.sh}"
for v in CVISOR KERNEL VMLINUX INITRD TMPDIR RIG_MODE; do
	eval "val=\${$v:-}"
	check "$v=$val"
	[ -n "$val" ] || fail "$v is not set"
done
for f in "$KERNEL" "$VMLINUX" "$INITRD"; do
	[ -s "$f" ] || fail "$f is missing"
done
[ -d "$TMPDIR" ] && [ -w "$TMPDIR" ] || fail "TMPDIR is not a writable directory"
[ -c /dev/kvm ] || fail "/dev/kvm is missing"
check "/dev/kvm is there"
if [ "$RIG_MODE" = nested ]; then
	for m in kvm_amd kvm tun vhost_net vhost_vsock bridge; do
		grep -q "^$m " /proc/modules || fail "module $m is not loaded"
	done
	check "kvm_amd, vhost_net, vhost_vsock, bridge loaded"
	grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || fail "no cgroup2 at /sys/fs/cgroup"
	check "cgroup2 at /sys/fs/cgroup; $(grep MemTotal /proc/meminfo); uptime $(cut -d' ' -f1 /proc/uptime)"
fi
