/* virtio-balloon (virtio 1.2, 5.5): the host asks the guest for memory
 * (num_pages, in 4 KiB pages) and gets it back as the guest reports the pages
 * it gave up; the host then drops them (MADV_DONTNEED). Also memory statistics
 * and free page reporting. */
#ifndef CVISOR_VIRTIO_BALLOON_H
#define CVISOR_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

/* device feature bits (5.5.3) */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_PAGE_POISON 4
#define VIRTIO_BALLOON_F_PAGE_REPORTING 5

#define VIRTIO_BALLOON_PFN_SHIFT 12 /* balloon pages are 4 KiB whatever the guest uses */
#define VIRTIO_BALLOON_PAGE (1ULL << VIRTIO_BALLOON_PFN_SHIFT)
#define VIRTIO_BALLOON_CONFIG_SIZE 8 /* num_pages, actual */
/* Queues that can exist with the features offered: inflateq, deflateq,
 * statsq, and reporting_vq at index 2, 3 or 4 (see balloon.c). */
#define VIRTIO_BALLOON_QUEUES 5

/* memory statistics tags (5.5.6.3.1) */
#define VIRTIO_BALLOON_S_SWAP_IN 0
#define VIRTIO_BALLOON_S_SWAP_OUT 1
#define VIRTIO_BALLOON_S_MAJFLT 2
#define VIRTIO_BALLOON_S_MINFLT 3
#define VIRTIO_BALLOON_S_MEMFREE 4
#define VIRTIO_BALLOON_S_MEMTOT 5
#define VIRTIO_BALLOON_S_AVAIL 6
#define VIRTIO_BALLOON_S_CACHES 7
#define VIRTIO_BALLOON_S_HTLB_PGALLOC 8
#define VIRTIO_BALLOON_S_HTLB_PGFAIL 9
#define VIRTIO_BALLOON_S_NR 10

struct virtio_balloon;

/* --balloon options. */
struct virtio_balloon_opts {
	uint64_t target; /* bytes the balloon should hold (taken from the guest) */
	bool free_page_reporting;
	bool deflate_on_oom;
};

/* The guest's latest statistics: val[tag] is meaningful when bit tag of valid is set. */
struct virtio_balloon_stats {
	uint64_t valid;
	uint64_t val[VIRTIO_BALLOON_S_NR];
	uint64_t updates; /* stats buffers received */
};

/* What the device did, in 4 KiB pages or bytes. */
struct virtio_balloon_counters {
	uint64_t inflated, deflated; /* pages named in inflate / deflate buffers */
	uint64_t bad_pfns;           /* PFNs outside guest RAM, skipped */
	uint64_t dropped;            /* pages given back to the host (MADV_DONTNEED) */
	uint64_t reported_bytes;     /* free page reporting: bytes dropped */
	uint64_t madvise_errors;
};

/* Parse "[target=SIZE][,free_page_reporting=on|off][,deflate_on_oom=on|off]"
 * (NULL or "" for defaults: target 0, both off); the target must fit in
 * mem_size. 0, or -EINVAL with one line in err. */
int virtio_balloon_parse(const char *opts, uint64_t mem_size, struct virtio_balloon_opts *o,
                         char *err, size_t errlen);
/* Create the device; NULL on allocation failure. */
struct virtio_balloon *virtio_balloon_create(const struct virtio_balloon_opts *o);
/* Tell the device its transport's virtio_dev (its lock guards every entry point). */
void virtio_balloon_attach(struct virtio_balloon *b, struct virtio_dev *vdev);
/* Free it (after its transport is gone). */
void virtio_balloon_destroy(struct virtio_balloon *b);
/* Ask for a balloon of `bytes` (rounded down to 4 KiB pages); raises the config
 * interrupt. 0, or -EINVAL when it is more than the guest's memory. */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes);
/* The current target, in bytes. */
uint64_t virtio_balloon_target(struct virtio_balloon *b);
/* The balloon's size as the guest last reported it (config field actual), in bytes. */
uint64_t virtio_balloon_actual(struct virtio_balloon *b);
/* Copy the latest statistics. 0, or -ENODATA if the guest sent none yet. */
int virtio_balloon_stats(struct virtio_balloon *b, struct virtio_balloon_stats *out);
/* Ask the guest for fresh statistics (hands its stats buffer back). 0, or
 * -EAGAIN when the device holds no stats buffer (no driver, or a request is
 * already out). */
int virtio_balloon_request_stats(struct virtio_balloon *b);
/* Copy the counters. */
void virtio_balloon_counters(struct virtio_balloon *b, struct virtio_balloon_counters *out);

extern const struct virtio_dev_ops virtio_balloon_ops;

#endif
