#!/bin/sh
# Fetch and cache the rig's assets under build/rig/ (idempotent):
#   build/rig/kernel/vmlinuz        Debian's cloud kernel (bzImage)
#   build/rig/kernel/vmlinux        the ELF inside it (has a PVH entry note)
#   build/rig/kernel/modules/*.ko   the modules the rig and the guests load
#   build/rig/kernel/version        the kernel release string (uname -r)
#   build/rig/busybox               a static busybox
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RIG=$ROOT/build/rig
K=$RIG/kernel
DL=$RIG/dl

# Modules wanted by the rig (L1) and by the guests (L2); missing ones are skipped.
MODULES="irqbypass kvm kvm-amd tun tap llc stp bridge vhost_iotlb vhost vhost_net
  vsock vmw_vsock_virtio_transport_common vhost_vsock vmw_vsock_virtio_transport
  virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk
  failover net_failover virtio_net virtio_console virtio-rng virtio_balloon button evdev veth"

log() { echo "assets: $*" >&2; }
die() { echo "assets: error: $*" >&2; exit 1; }

u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' \n'; }
u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' \n'; }

# Extract the uncompressed ELF from a bzImage: $1 bzImage, $2 output.
extract_vmlinux() {
	setup_sects=$(u8 "$1" 497)            # 0x1f1
	[ "$setup_sects" -eq 0 ] && setup_sects=4
	poff=$(u32 "$1" 584)                  # 0x248 payload_offset
	plen=$(u32 "$1" 588)                  # 0x24c payload_length
	start=$(( (setup_sects + 1) * 512 + poff ))
	tmp=$2.payload
	tail -c +$((start + 1)) "$1" | head -c "$plen" >"$tmp"
	magic=$(od -An -tx1 -N6 "$tmp" | tr -d ' \n')
	# The kernel appends the uncompressed size (le32) after xz/zstd/lz4 streams.
	case $magic in
	fd377a585a00*) xz -dc --single-stream <"$tmp" >"$2" ;;
	28b52ffd*) head -c $((plen - 4)) "$tmp" | zstd -dcq >"$2" ;;
	1f8b*) gzip -dc <"$tmp" >"$2" 2>/dev/null || [ -s "$2" ] ;;
	02214c18*) head -c $((plen - 4)) "$tmp" | lz4 -dc >"$2" ;;
	*) die "unknown payload compression (magic $magic)" ;;
	esac
	rm -f "$tmp"
	[ "$(od -An -c -N4 "$2" | tr -d ' \n')" = '177ELF' ] || die "extracted vmlinux is not an ELF"
	readelf -n "$2" | grep -q -E '^ *Xen .*(0x00000012|XEN_ELFNOTE_PHYS32_ENTRY)' ||
		die "vmlinux has no PVH (Xen 0x12) note"
}

fetch_kernel() {
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 (apt-get update?)"
	ver=$(apt-cache show "$pkg" | awk '/^Version:/ { print $2; exit }')
	stamp="$pkg $ver $(echo $MODULES)"
	if [ -f "$K/stamp" ] && [ "$(cat "$K/stamp")" = "$stamp" ] &&
		[ -s "$K/vmlinux" ] && [ -s "$K/vmlinuz" ]; then
		return 0
	fi
	log "fetching $pkg $ver"
	mkdir -p "$DL"
	rm -rf "$DL/root" "$K"
	deb=$(ls "$DL/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$DL" && apt-get download "$pkg" 2>&1 | grep -v -e '_apt' -e '^W:' >&2 || true)
		deb=$(ls "$DL/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
		[ -n "$deb" ] || die "apt-get download $pkg failed"
	fi
	dpkg-deb -x "$deb" "$DL/root"
	kver=$(ls "$DL/root/lib/modules" | head -n1)
	mkdir -p "$K/modules"
	cp "$DL/root/boot/vmlinuz-$kver" "$K/vmlinuz"
	cp "$DL/root/boot/config-$kver" "$K/config"
	log "extracting vmlinux from the bzImage"
	extract_vmlinux "$K/vmlinuz" "$K/vmlinux"
	for m in $MODULES; do
		f=$(find "$DL/root/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
		[ -n "$f" ] || continue
		case $f in
		*.xz) xz -dc "$f" >"$K/modules/$m.ko" ;;
		*.zst) zstd -dcq "$f" >"$K/modules/$m.ko" ;;
		*) cp "$f" "$K/modules/$m.ko" ;;
		esac
	done
	echo "$kver" >"$K/version"
	rm -rf "$DL/root"
	echo "$stamp" >"$K/stamp"
	log "kernel $kver ready in build/rig/kernel"
}

fetch_busybox() {
	[ -x "$RIG/busybox" ] && return 0
	mkdir -p "$RIG"
	if [ -x /bin/busybox ] && ! readelf -l /bin/busybox 2>/dev/null | grep -q INTERP; then
		cp /bin/busybox "$RIG/busybox"
	else
		log "fetching busybox-static"
		mkdir -p "$DL"
		(cd "$DL" && apt-get download busybox-static 2>&1 | grep -v -e '_apt' -e '^W:' >&2 || true)
		deb=$(ls "$DL"/busybox-static_*.deb 2>/dev/null | head -n1 || true)
		[ -n "$deb" ] || die "apt-get download busybox-static failed"
		rm -rf "$DL/bb" && dpkg-deb -x "$deb" "$DL/bb"
		cp "$DL/bb/bin/busybox" "$RIG/busybox"
		rm -rf "$DL/bb"
	fi
	chmod +x "$RIG/busybox"
}

mkdir -p "$RIG"
exec 9>"$RIG/.assets.lock"
flock 9    # parallel runs: one fetches, the others wait and find it done
fetch_kernel
fetch_busybox
