/* External qcow2 overlays of open disks (snapshots with disk_overlay, and
 * `--disk ...,overlay=on`): naming and creating the overlay file next to its
 * image, and turning the open image into a read-only backing file in place.
 *
 * The overlay is created by qcow2_create (the code behind `cvisor img create
 * -b`); its header names the image by its file name (relative: the two stay
 * usable when their directory moves) and records the image's format, so the
 * backing file is never probed. The image itself is never written again by
 * the overlay's user: it becomes a frozen base. */
#ifndef CVISOR_BLOCK_OVERLAY_H
#define CVISOR_BLOCK_OVERLAY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "block/block.h"

/* Tries at names with a -N suffix when the plain name exists. */
#define BLK_OVERLAY_TRIES 100

/* The path of overlay number n (0: the first try) of image, made at `when`:
 * the image's directory, its file name without a ".qcow2", ".img" or ".raw"
 * extension and without an earlier overlay's stamp, then ".YYYYMMDD-HHMMSS"
 * (UTC), "-n" when n > 0, and ".qcow2":
 *   /vm/disk.qcow2 -> /vm/disk.20250102-030405.qcow2 -> /vm/disk.20250102-040000.qcow2
 * 0, or -ENAMETOOLONG when it does not fit in outlen. */
int blk_overlay_name(const char *image, time_t when, unsigned n, char *out, size_t outlen);

/* Create a new, empty qcow2 overlay over image (a regular file, format fmt:
 * "raw" or "qcow2", guest size bytes) next to it, named by blk_overlay_name
 * at the current time; an existing file is never touched (O_EXCL, then the
 * next -N). Its permissions are the image's. The absolute path goes to out.
 * 0, or -errno with one line naming the image in err (nothing left behind). */
int blk_overlay_create(const char *image, const char *fmt, uint64_t size, char *out,
                       size_t outlen, char *err, size_t errlen);

/* Flush d and wait for it: every completed write durable. Everything else
 * in flight on d's engine is waited for too (its callbacks run). 0 or -errno. */
int blk_flush_wait(struct blk_disk *d);

/* Open the overlay at path (made by blk_overlay_create over the image that
 * the writable disk old has open) on aio, for a live switch to it: old is
 * flushed, the overlay and its backing chain are opened with their locks
 * held back (blk_defer_locks), then old lets go of its write lock (for
 * qcow2 this writes back its caches and clears the dirty bit) and the
 * overlay's locks are taken: write on the overlay, read on the image. The
 * image is unlocked only between those two fcntl calls.
 * Afterwards old is only to be closed (nothing may be submitted to it), or,
 * to go back, passed to blk_overlay_cancel. Nothing may be in flight on old.
 * 0, or -errno with one line naming the overlay in err, old as it was. */
int blk_overlay_open(struct blk_disk **out, const char *path, struct blk_disk *old,
                     struct aio *aio, char *err, size_t errlen);

/* Go back after blk_overlay_open: close the overlay and take old's write lock
 * again. -EBUSY if someone else took the image meanwhile. */
int blk_overlay_cancel(struct blk_disk *overlay, struct blk_disk *old);

#endif
