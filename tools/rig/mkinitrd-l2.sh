#!/bin/sh
# Build the L2 (guest) initramfs: busybox with its applet links, the virtio and ACPI
# button modules of the rig kernel, and tests/guest/init as /init.
# Usage: tools/rig/mkinitrd-l2.sh OUT.cpio.gz
set -eu
[ $# -eq 1 ] || { echo "usage: $0 OUT.cpio.gz" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RIG=$ROOT/build/rig
case $1 in /*) out=$1 ;; *) out=$(pwd)/$1 ;; esac

[ -s "$RIG/kernel/vmlinuz" ] && [ -x "$RIG/busybox" ] || "$ROOT/tools/rig/assets.sh"

MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
  virtio_blk failover net_failover virtio_net virtio_console virtio-rng virtio_balloon
  vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport button evdev"

# Test tools (tests/tools/*.c): static binaries for the guest and for L1.
mkdir -p "$RIG/tools"
for src in "$ROOT"/tests/tools/*.c; do
	[ -f "$src" ] || continue
	bin=$RIG/tools/$(basename "$src" .c)
	if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
		gcc -static -O2 -Wall -Wextra -Werror -o "$bin.$$" "$src" && mv "$bin.$$" "$bin"
	fi
done

stage=$(mktemp -d "$RIG/l2-root.XXXXXX")
trap 'rm -rf "$stage"' EXIT
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin lib/modules proc sys dev tmp run root etc/acpi/PWRF
cp "$RIG/busybox" bin/busybox
for applet in $(bin/busybox --list-full); do
	[ -e "$applet" ] || ln -s /bin/busybox "$applet"
done
for m in $MODULES; do
	[ -f "$RIG/kernel/modules/$m.ko" ] && cp "$RIG/kernel/modules/$m.ko" lib/modules/
done
for t in "$RIG"/tools/*; do [ -x "$t" ] && cp "$t" bin/; done
cp "$ROOT/tests/guest/init" init
chmod 755 init
cat >etc/acpi/PWRF/00000080 <<'EOS'
#!/bin/sh
echo "CVISOR-GUEST-POWEROFF" >/dev/console
sleep 0.2
poweroff -f
EOS
chmod 755 etc/acpi/PWRF/00000080
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"    # atomic: parallel runs may build it at the same time
