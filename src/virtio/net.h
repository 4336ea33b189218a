/* virtio-net (virtio 1.2, 5.1) on a tap device: queue 0 receives, queue 1
 * transmits, no control queue. Frames carry the 12-byte virtio_net_hdr_v1 in
 * the rings and on the tap alike, so data moves with one readv/writev between
 * guest buffers and the tap. Optional token-bucket limits per direction. */
#ifndef CVISOR_VIRTIO_NET_H
#define CVISOR_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tap.h"
#include "virtio/virtio.h"

/* device feature bits (virtio 1.2, 5.1.3) */
#define VIRTIO_NET_F_CSUM 0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU 3
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_GUEST_UFO 10
#define VIRTIO_NET_F_HOST_TSO4 11
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_HOST_UFO 14
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_S_LINK_UP 1

#define VIRTIO_NET_HDR_LEN 12      /* struct virtio_net_hdr_v1, num_buffers included */
#define VIRTIO_NET_FRAME_MAX 65550 /* largest frame (64 KiB GSO + Ethernet/VLAN) */
#define VIRTIO_NET_TX_MAX 65536    /* largest frame the guest may send, header excluded */
#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_QUEUE_MAX 256
#define VIRTIO_NET_CONFIG_SIZE 12 /* mac[6], status, max_virtqueue_pairs, mtu */

/* One --net option, parsed. */
struct virtio_net_opts {
	char tap[TAP_NAME_MAX];
	uint8_t mac[6];
	bool has_mac;
	uint64_t bps; /* bytes per second, each direction; 0 = no limit */
	uint64_t pps; /* packets per second, each direction; 0 = no limit */
};

/* Counters for metrics (frames exclude the 12-byte header). */
struct virtio_net_stats {
	uint64_t rx_bytes, rx_packets, rx_drops, rx_errors;
	uint64_t tx_bytes, tx_packets, tx_drops, tx_errors;
	uint64_t rx_throttled, tx_throttled; /* times a limit made a direction wait */
};

struct virtio_net;

/* Parse "tap=NAME[,mac=MAC][,bps=N][,pps=N]". 0 or -EINVAL with one line in err. */
int virtio_net_parse(const char *opts, struct virtio_net_opts *o, char *err, size_t errlen);
/* The MAC of NIC `index` of VM `vm_name` when none is given: 52:54 followed by
 * four bytes of an FNV-1a hash of both (locally administered, unicast). */
void virtio_net_default_mac(const char *vm_name, unsigned index, uint8_t mac[6]);
/* Parse a --net option string, open its tap and create the device. 0 or -errno
 * with one line in err. */
int virtio_net_create(const char *opts, const char *vm_name, unsigned index,
                      struct virtio_net **out, char *err, size_t errlen);
/* Create the device on an open frame fd (tests); takes the fd. NULL (fd closed) on failure. */
struct virtio_net *virtio_net_create_fd(int fd, const struct virtio_net_opts *o,
                                        const char *vm_name, unsigned index);
/* Bind to the transport's device and register the tap and timers on its loop
 * (main thread, before the vCPUs run; activate does it otherwise). 0 or -errno. */
int virtio_net_attach(struct virtio_net *n, struct virtio_dev *vdev);
/* Free it (after its transport is gone). */
void virtio_net_destroy(struct virtio_net *n);
/* Copy the counters (any thread). */
void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *s);
/* Change the rate limits of both directions live (UINT64_MAX: keep; 0: none). */
int virtio_net_set_limits(struct virtio_net *n, uint64_t bps, uint64_t pps);
/* Send one RARP broadcast from the guest's MAC into the tap, so switches and
 * bridges learn where the guest is (vm_announce: after a restore, and after a
 * migration once the takeover is final). Bytes written, or -errno. */
int virtio_net_announce(struct virtio_net *n);
/* The MAC address the guest sees. */
void virtio_net_get_mac(struct virtio_net *n, uint8_t mac[6]);

extern const struct virtio_dev_ops virtio_net_ops;

#endif
