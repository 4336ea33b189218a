/* virtio-blk (virtio 1.2, section 5.2) on the block layer (block/block.h):
 * one request queue, requests completed asynchronously and out of order.
 *
 * Everything the guest writes is hostile: headers are copied before use,
 * every range is checked against the capacity, and a bad request fails with
 * a status byte, or, when its descriptor chain has nowhere to put one, puts
 * the device into NEEDS_RESET. Never an exit, an abort or a spin. */
#ifndef CVISOR_VIRTIO_BLK_H
#define CVISOR_VIRTIO_BLK_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"
#include "vm/evloop.h"

/* feature bits (5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_CONFIG_WCE 11
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* request types (5.2.6) */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* request status */
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* discard / write zeroes segment flags */
#define VIRTIO_BLK_WZ_F_UNMAP 1u

#define VIRTIO_BLK_ID_BYTES 20 /* GET_ID: NUL-padded, no NUL when 20 long */

/* what this device offers */
#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_SEG_MAX 128          /* data segments per request */
#define VIRTIO_BLK_MAX_DISCARD_SECTORS (1u << 22)
#define VIRTIO_BLK_MAX_DISCARD_SEG 16
#define VIRTIO_BLK_MAX_WZ_SECTORS (1u << 22)
#define VIRTIO_BLK_MAX_WZ_SEG 16

/* The device configuration as the driver sees it (all little-endian). */
struct virtio_blk_config {
	uint64_t capacity; /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders; /* geometry: not offered */
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp; /* topology */
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
	uint32_t max_secure_erase_sectors; /* secure erase: not offered */
	uint32_t max_secure_erase_seg;
	uint32_t secure_erase_sector_alignment;
};

/* The request header at the start of the device-readable part. */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t reserved; /* ioprio in legacy */
	uint64_t sector;
};

/* One range of a discard or write zeroes request. */
struct virtio_blk_dwz {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

enum virtio_blk_format { VIRTIO_BLK_FORMAT_RAW, VIRTIO_BLK_FORMAT_QCOW2 };

/* `--disk path=P[,format=raw|qcow2][,readonly=on|off][,serial=S][,iops=N][,bps=N]
 *         [,overlay=on|off]` */
struct virtio_blk_opts {
	char path[PATH_MAX];
	enum virtio_blk_format format;
	bool format_given; /* format= was given: nothing is probed */
	bool readonly;
	bool overlay; /* P is only read: the device runs on a new qcow2 overlay over it */
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	uint64_t iops; /* 0: no limit (kept for the rate limiter) */
	uint64_t bps;  /* 0: no limit */
	bool sync_io;  /* not an option: force the synchronous I/O engine (tests) */
};

struct virtio_blk;

struct virtio_blk_stats {
	uint64_t ops, bytes, throttled; /* requests taken, their data bytes, waits for a limit */
	uint64_t bps, iops;             /* current limits (0: none) */
};

/* Change the rate limits live (UINT64_MAX: keep; 0: no limit). */
int virtio_blk_set_limits(struct virtio_blk *vb, uint64_t bps, uint64_t iops);
/* Counters and limits for the API. */
void virtio_blk_get_stats(struct virtio_blk *vb, struct virtio_blk_stats *out);

/* Parse the value of one --disk option. On bad input returns -EINVAL with one
 * line in err. Without format=, virtio_blk_create detects the format from the
 * image's first bytes (and a raw image found so refuses guest writes that
 * would make it look like qcow2). */
int virtio_blk_parse_opts(struct virtio_blk_opts *o, const char *arg, char *err, size_t errlen);
/* Open and lock the image and make a device whose completions run on loop.
 * With overlay, the image is opened read-only as the backing file of a new
 * overlay next to it (block/overlay.h), which the device runs on
 * (virtio_blk_path names it). 0, or -errno with one line naming the image in err. */
int virtio_blk_create(struct virtio_blk **out, const struct virtio_blk_opts *o,
                      struct evloop *loop, char *err, size_t errlen);
/* Wait for in-flight I/O, unlock and close the image, free the device. */
void virtio_blk_destroy(struct virtio_blk *vb);
/* Release (locked=false) or take back the image lock, the disk staying open
 * (live migration's switch-over). -ENOTSUP if the format cannot. */
int virtio_blk_set_locked(struct virtio_blk *vb, bool locked);
/* The --disk option value describing o (parsed or built), commas in values
 * doubled; without format= when it was not given. 0 or -ENAMETOOLONG. */
int virtio_blk_format_opts(const struct virtio_blk_opts *o, char *buf, size_t len);

/* A live switch to a new qcow2 overlay (snapshots with disk_overlay), the VM
 * paused, in two steps so that several disks switch all or none:
 * prepare waits for the requests in flight, flushes the image, creates its
 * overlay next to it (block/overlay.h) and opens it, the image handing its
 * write lock to the overlay and keeping none; the device still runs on the
 * image and nothing can reach it. Then commit (cannot fail) puts the device
 * on the overlay and closes the image, now a frozen base; or abort deletes
 * the overlay and takes the image's write lock back. prepare: 0, or -errno
 * with one line in err and nothing changed (-EINVAL for a read-only disk). */
int virtio_blk_overlay_prepare(struct virtio_blk *vb, char *err, size_t errlen);
void virtio_blk_overlay_commit(struct virtio_blk *vb);
void virtio_blk_overlay_abort(struct virtio_blk *vb);
/* The image the device runs on (absolute once on an overlay); its driver's name. */
const char *virtio_blk_path(const struct virtio_blk *vb);
const char *virtio_blk_format(const struct virtio_blk *vb);
bool virtio_blk_readonly(const struct virtio_blk *vb);
/* Capacity in 512-byte sectors. */
uint64_t virtio_blk_capacity(const struct virtio_blk *vb);
/* Requests taken from the queue whose status has not been written yet. */
unsigned virtio_blk_inflight(const struct virtio_blk *vb);

/* The ops the transport drives (priv is the struct virtio_blk *). After load,
 * the saved in-flight requests are resubmitted when the transport calls
 * activate (and a device that was never activated keeps them for save). */
extern const struct virtio_dev_ops virtio_blk_ops;

#endif
