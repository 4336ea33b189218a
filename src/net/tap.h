/* The host side of virtio-net: a Linux tap interface opened through
 * /dev/net/tun. Every read or write moves one Ethernet frame preceded by a
 * 12-byte virtio-net header (IFF_VNET_HDR with TUNSETVNETHDRSZ 12, the size
 * of struct virtio_net_hdr_v1), so the device can pass guest buffers to the
 * kernel unchanged. The fd is non-blocking. A test can hand in any other fd
 * that keeps frame boundaries (a SOCK_SEQPACKET socketpair). */
#ifndef CVISOR_NET_TAP_H
#define CVISOR_NET_TAP_H

#include <stdbool.h>
#include <stddef.h>

#define TAP_VNET_HDR_LEN 12
#define TAP_NAME_MAX 16 /* IFNAMSIZ, including the terminating NUL */

/* offloads the reader (the guest) accepts, for tap_set_offload() */
#define TAP_OFFLOAD_CSUM 1u    /* frames may carry a partial checksum */
#define TAP_OFFLOAD_TSO4 2u    /* TCP over IPv4 segmentation left to the reader */
#define TAP_OFFLOAD_TSO6 4u    /* TCP over IPv6 segmentation left to the reader */
#define TAP_OFFLOAD_TSO_ECN 8u /* ... including segments with ECN/CWR */

struct tap {
	int fd;      /* -1 when closed */
	bool is_tap; /* a real tap: the TUN ioctls apply */
	char name[TAP_NAME_MAX];
};

/* Attach to the existing tap interface `name`. 0, or -errno with one line in
 * err (no such tap, permission, /dev/net/tun missing, busy, not a tap). */
int tap_open(struct tap *t, const char *name, char *err, size_t errlen);
/* Wrap an already open frame fd (tests); takes ownership and makes it non-blocking. */
void tap_from_fd(struct tap *t, int fd);
/* Tell the tap which TAP_OFFLOAD_* the reader accepts; no-op for a non-tap fd. 0 or -errno. */
int tap_set_offload(struct tap *t, unsigned offloads);
/* Close the fd (safe to call twice). */
void tap_close(struct tap *t);

#endif
