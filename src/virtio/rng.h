/* virtio-rng (virtio 1.2, 5.4): entropy from getrandom(), rate-limited. */
#ifndef CVISOR_VIRTIO_RNG_H
#define CVISOR_VIRTIO_RNG_H

#include <stdint.h>

#include "virtio/virtio.h"

#define VIRTIO_RNG_DEFAULT_BPS (1ULL << 20) /* 1 MiB/s: plenty for a guest's pool */

struct virtio_rng;

/* Create with a byte rate (0: unlimited). NULL on allocation failure. */
struct virtio_rng *virtio_rng_create(uint64_t bytes_per_sec);
/* Free it (after its transport is gone). */
void virtio_rng_destroy(struct virtio_rng *r);
/* Parse "bps=N" (or empty) from --rng; 0 or -EINVAL with a message. */
int virtio_rng_parse(const char *opts, uint64_t *bps, char *err, size_t errlen);

extern const struct virtio_dev_ops virtio_rng_ops;

#endif
