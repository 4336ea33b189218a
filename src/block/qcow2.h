/* qcow2 disk images (QEMU's copy-on-write format, versions 2 and 3; the
 * format is QEMU's docs/interop/qcow2.txt): a second block driver next to raw,
 * plus what `cvisor img` needs beyond the driver interface (create, check,
 * resize, backing changes, block status).
 *
 * Threat model: the image file is hostile. Every header field, table offset
 * and size is checked before use; a crafted image gets an error (-EINVAL,
 * -ENOTSUP or -EIO), never an out-of-bounds access or an allocation larger
 * than the image itself justifies. Backing files are opened read-only with
 * the format the header records; nothing is ever probed on their behalf.
 *
 * Crash consistency: metadata is written back in an order that keeps the
 * image consistent whenever the process dies (refcount blocks, then L2
 * tables, then the L1 table; reference drops only once the tables that no
 * longer point at a cluster are on disk), with fdatasync between dependent
 * steps, so `qemu-img check` finds at most leaked clusters after a crash.
 *
 * Internal snapshots (qcow2_snapshot.c) share clusters with the active
 * tables; a write copies any L2 table or data cluster whose COPIED flag (and
 * its L1 entry's) is not set, so a snapshot never changes under writes. */
#ifndef CVISOR_BLOCK_QCOW2_H
#define CVISOR_BLOCK_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "block/block.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/* qcow2_open flags */
#define QCOW2_OPEN_NO_BACKING 1u    /* do not open the backing file (unallocated reads zero) */
#define QCOW2_OPEN_REPAIR 2u        /* writable open of a corrupt image, to repair it */
#define QCOW2_OPEN_NO_REPAIR 4u     /* leave a dirty image's refcounts alone (check) */
#define QCOW2_OPEN_LOCAL_BACKING 8u /* backing names may not contain '/' (fuzzing) */

/* The qcow2 driver (open detects nothing: the file must be qcow2). */
extern const struct blk_driver blk_qcow2_driver;

/* Open a qcow2 image with QCOW2_OPEN_* flags; otherwise like blk_driver.open. */
int qcow2_open(struct blk_disk **out, const char *path, bool readonly, unsigned flags,
               struct aio *aio, char *err, size_t errlen);
/* Whether d was opened by the qcow2 driver. */
bool qcow2_is(const struct blk_disk *d);

/* What `img info` shows about an open image. */
struct qcow2_info {
	uint32_t version;
	uint64_t cluster_size;
	uint64_t size;
	uint32_t refcount_bits;
	bool lazy_refcounts;
	bool corrupt;
	bool dirty;
	bool zstd;
	uint32_t nb_snapshots;
	uint64_t incompatible, compatible, autoclear;
	char backing[1024];    /* as recorded in the header; "" when none */
	char backing_fmt[16];  /* "" when the header names none */
};

/* Fill info from the open qcow2 image d. */
void qcow2_get_info(struct blk_disk *d, struct qcow2_info *info);

/* Block status results */
enum qcow2_status { QCOW2_DATA, QCOW2_ZERO, QCOW2_UNALLOCATED };

/* The status of the run starting at off (at most len bytes, inside the disk):
 * returns a QCOW2_* status with the run length in *n, or -errno. */
int qcow2_block_status(struct blk_disk *d, uint64_t off, uint64_t len, uint64_t *n);

/* Options of qcow2_create. */
struct qcow2_create_opts {
	uint64_t size;             /* virtual size in bytes */
	uint32_t cluster_size;     /* 0: 64 KiB */
	uint32_t version;          /* 2 or 3; 0: 3 */
	uint32_t refcount_bits;    /* 1..64, a power of two; 0: 16 */
	bool lazy_refcounts;       /* version 3 only */
	const char *backing;       /* NULL: none; stored as given */
	const char *backing_fmt;   /* "raw" or "qcow2" (required with backing) */
	uint8_t compression;       /* compressed clusters: 0 zlib (deflate), 1 zstd (version 3) */
};

/* Create (or truncate, after taking its lock) a qcow2 image at path.
 * 0, or -errno with one line in err. */
int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *err, size_t errlen);

/* check repair levels */
#define QCOW2_REPAIR_NONE 0
#define QCOW2_REPAIR_LEAKS 1
#define QCOW2_REPAIR_ALL 2

/* What qcow2_check found (after repairing, what is left). */
struct qcow2_check_res {
	uint64_t leaks;            /* clusters with a refcount above their references */
	uint64_t corruptions;      /* anything else wrong */
	uint64_t leaks_fixed;
	uint64_t corruptions_fixed;
	uint64_t guest_clusters;   /* clusters of the virtual disk */
	uint64_t allocated;        /* of those, allocated in this image */
	uint64_t compressed;
	uint64_t fragmented;
	uint64_t image_end;        /* bytes: end of the last used cluster */
};

/* Check refcounts against references (and the COPIED flags), repairing at
 * the given level (the image must then be open writable with
 * QCOW2_OPEN_REPAIR). Problems are listed on out (may be NULL).
 * 0 when the check ran (see res), or -errno when it could not. */
int qcow2_check(struct blk_disk *d, int repair, FILE *out, struct qcow2_check_res *res);

/* Grow the virtual size of a writable image (never shrinks: -ENOTSUP). */
int qcow2_resize(struct blk_disk *d, uint64_t size);

/* Record a new backing file name and format ("" / NULL name: none) in the
 * header of a writable image; the data is not touched. */
int qcow2_set_backing(struct blk_disk *d, const char *backing, const char *fmt);

/* Make every cluster of a writable image unallocated (after commit). */
int qcow2_make_empty(struct blk_disk *d);

/* One internal snapshot as listed by qcow2_snapshots. */
struct qcow2_snapshot {
	char id[128];
	char name[256];
	uint64_t vm_state_size;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t icount;           /* UINT64_MAX: none recorded */
};

/* Call fn for each internal snapshot of d; 0 or -errno. */
int qcow2_snapshots(struct blk_disk *d, void (*fn)(void *opaque, const struct qcow2_snapshot *s),
                    void *opaque);

/* Internal snapshots of a writable image nobody else uses (the caller holds
 * the image's lock), as qemu-img snapshot makes them: the active L1 table is
 * copied, every cluster it reaches gains a reference, and later writes copy
 * shared clusters first. Each operation commits with one header write (new
 * snapshot table, then the header, then the old table is freed), so a crash
 * leaves the image as before or after, with at most leaked clusters.
 * Errors: -ENOENT no such snapshot, -EEXIST the name is taken, -EINVAL bad
 * name, -EFBIG too many snapshots, -ERANGE the refcount width cannot count
 * another reference, -EROFS read-only, -EIO/-EINVAL a damaged image. */
/* Create a snapshot NAME (1 to QCOW2_MAX_SNAP_NAME bytes) of the disk as it is now. */
int qcow2_snapshot_create(struct blk_disk *d, const char *name);
/* Delete the snapshot whose ID, else whose name, is name. */
int qcow2_snapshot_delete(struct blk_disk *d, const char *name);
/* Make the snapshot whose ID, else whose name, is name the disk's content
 * (and size); the current content is dropped. */
int qcow2_snapshot_apply(struct blk_disk *d, const char *name);
#define QCOW2_MAX_SNAP_NAME 255

/* Write one whole cluster of data (cluster_size bytes at a cluster-aligned
 * guest offset off) as a compressed cluster with the image's compression
 * type, or as a normal cluster when compressing does not make it smaller.
 * For filling new images (convert -c); 0 or -errno. */
int qcow2_write_compressed(struct blk_disk *d, uint64_t off, const void *buf);

/* Detected image formats */
enum qcow2_fmt { QCOW2_FMT_RAW, QCOW2_FMT_QCOW2 };

/* Detect the format of path from its first bytes (the qcow2 magic, else raw).
 * Returns a QCOW2_FMT_* or -errno. */
int qcow2_probe(const char *path);

/* Open path as format fmt ("raw", "qcow2", or NULL to detect from the magic).
 * A raw image opened by detection refuses guest writes that would make its
 * first sector look like a qcow2 header (the probing attack on raw images).
 * Otherwise like blk_driver.open. */
int qcow2_open_any(struct blk_disk **out, const char *path, const char *fmt, bool readonly,
                   struct aio *aio, char *err, size_t errlen);

#endif
