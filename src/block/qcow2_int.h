/* qcow2 internals shared by the qcow2_*.c files (not for other modules).
 *
 *   qcow2.c           open/close, backing files, the driver ops (requests)
 *   qcow2_header.c    header and extensions: parse, check, rewrite; create
 *   qcow2_cluster.c   metadata cache, L1/L2 mapping, allocating writes
 *   qcow2_refcount.c  refcounts, cluster allocation, ordered metadata flush
 *   qcow2_check.c     consistency check, repair, refcount rebuild
 *   qcow2_compress.c  compressed clusters: reads and writes (zlib, zstd)
 *   qcow2_snapshot.c  internal snapshots: the table, create, delete, apply
 *   qcow2_probe.c     format detection, the guarded raw driver */
#ifndef CVISOR_BLOCK_QCOW2_INT_H
#define CVISOR_BLOCK_QCOW2_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"
#include "block/qcow2.h"

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_CREATE_HEADER_LEN 112 /* through compression_type, padded */
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_FMT_NAME 15
#define QCOW2_MAX_L1_BYTES (32u << 20)  /* QEMU's limits: images beyond them */
#define QCOW2_MAX_RT_BYTES (8u << 20)   /* would not open there either */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_SNAP_TABLE (64u << 20)
#define QCOW2_SNAP_ENTRY_LEN 40         /* fixed part of a snapshot table entry */
#define QCOW2_MAX_SNAP_EXTRA 1024       /* extra data per entry (QEMU's limit) */
#define QCOW2_SNAP_EXTRA_LEN 24         /* what we write: vm state size, disk size, icount */
#define QCOW2_MAX_SIZE (1ULL << 61)     /* virtual size */
#define QCOW2_MAX_HOST_OFF (1ULL << 56) /* L1/L2/refcount table offsets */
#define QCOW2_MAX_DEPTH 32              /* backing chain */
#define QCOW2_MAX_CHECK_CLUSTERS (1ULL << 25) /* 128 MiB of counters */

/* incompatible features */
#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_COMPRESSION)
/* compatible features */
#define QCOW2_COMPAT_LAZY (1ULL << 0)

/* header extension types */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u
#define QCOW2_EXT_CRYPTO 0x0537be77u
#define QCOW2_EXT_DATA_FILE 0x44415441u

/* header field offsets */
#define QCOW2_OFF_SIZE 24
#define QCOW2_OFF_L1_SIZE 36
#define QCOW2_OFF_L1_OFF 40
#define QCOW2_OFF_RT_OFF 48
#define QCOW2_OFF_INCOMPAT 72
#define QCOW2_OFF_AUTOCLEAR 88

/* L1/L2 entries */
#define QCOW2_COPIED (1ULL << 63)
#define QCOW2_COMPRESSED (1ULL << 62)
#define QCOW2_ZERO_FLAG 1ULL
#define QCOW2_OFF_MASK 0x00fffffffffffe00ULL
#define QCOW2_L1_RESERVED 0x7f000000000001ffULL
#define QCOW2_L2_RESERVED 0x3f000000000001feULL

/* A cache of one-cluster metadata tables (L2 tables or refcount blocks). */
struct qcow2_cent {
	uint64_t off; /* host offset of the table; 0: slot empty */
	uint8_t *buf; /* one cluster, allocated on first use */
	uint64_t lru;
	bool dirty;
};

struct qcow2_cache {
	unsigned n;
	bool is_l2;
	struct qcow2_cent *e;
	uint64_t tick;
};

/* A parsed header (host byte order) plus what the extensions said. */
struct qcow2_header {
	uint32_t version;
	uint64_t backing_off;
	uint32_t backing_len;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt;
	uint32_t l1_size;
	uint64_t l1_off;
	uint64_t rt_off;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snap_off;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_len;
	uint8_t compression; /* 0 zlib, 1 zstd */
	char backing[QCOW2_MAX_BACKING_NAME + 1];
	char backing_fmt[QCOW2_MAX_FMT_NAME + 1];
	uint32_t ext_end;          /* first byte after the extension area's end marker */
	uint8_t *raw;              /* header bytes [0, header_len) as read */
	uint8_t *exts;             /* extensions kept for rewriting (not the backing format) */
	uint32_t exts_len;
	const uint8_t *feat;       /* feature name table inside exts (for messages) */
	uint32_t feat_len;
	bool has_bitmaps;
	uint64_t bm_dir_off, bm_dir_size;
	uint32_t bm_count;
};

struct qcow2;

/* A backing file: raw (an fd of our own) or qcow2. */
struct qcow2_backing {
	int fd;              /* raw: the file; -1 for qcow2 */
	uint64_t size;
	struct blk_disk *disk; /* qcow2 */
};

struct qcow2 {
	struct blk_disk d; /* first: the driver gets it back as a struct blk_disk * */
	char *path;
	int fd;
	unsigned flags;
	unsigned depth;
	struct qcow2_header h;
	uint64_t cs;              /* cluster size */
	uint32_t cbits;
	uint64_t l2_entries;
	uint32_t l2_bits;
	uint32_t rb_bits;         /* log2 of refcount block entries */
	uint32_t rc_bits;         /* bits per refcount */
	uint64_t rc_max;
	uint64_t *l1;             /* l1_size entries, host order */
	uint32_t l1_dirty_lo, l1_dirty_hi; /* dirty entries [lo, hi) */
	uint64_t *rt;             /* refcount table, host order */
	uint64_t rt_entries;
	struct qcow2_cache l2c, rbc;
	uint64_t free_hint;       /* cluster index: nothing free below it */
	uint64_t file_end;        /* bytes: the file's size or the end of the last allocation */
	uint64_t zero_from;       /* bytes: nothing at or after this was ever written */
	uint64_t *pending;        /* host clusters losing one reference at the next flush */
	size_t npending, cap_pending;
	struct qcow2_backing bk;
	bool has_backing;
	unsigned busy;            /* data requests in flight on fd or the backing */
	bool lazy;                /* lazy refcounts in use: the dirty bit covers ordering */
	bool dirty_on_disk;       /* the dirty bit is set in the file */
	bool corrupt;
	bool deferred;            /* another process holds the lock (migration): reload on use */
	bool unsynced;            /* metadata written since the last fdatasync */
	bool unsynced_rb;         /* of which refcount blocks or the refcount table */
	uint64_t snap_len;        /* bytes of the snapshot table */
	uint64_t cfree;           /* compressed writes: next free byte in a cluster (0: none) */
	/* the last decompressed cluster */
	uint64_t zkey;
	bool zvalid;
	uint8_t *zbuf;
	void *zstd_ctx;
};

/* ---- big-endian helpers ---- */

static inline uint16_t qcow2_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t qcow2_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t qcow2_be64(const uint8_t *p)
{
	return (uint64_t)qcow2_be32(p) << 32 | qcow2_be32(p + 4);
}

static inline void qcow2_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void qcow2_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void qcow2_put64(uint8_t *p, uint64_t v)
{
	qcow2_put32(p, (uint32_t)(v >> 32));
	qcow2_put32(p + 4, (uint32_t)v);
}

static inline uint64_t qcow2_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* ---- qcow2_header.c ---- */

/* Parse and check the header in buf (the first len bytes of the file, at
 * least one cluster or the whole file) of a file of file_size bytes. */
int qcow2_header_parse(struct qcow2_header *h, const uint8_t *buf, size_t len,
                       uint64_t file_size, char *err, size_t errlen);
/* Free what qcow2_header_parse allocated. */
void qcow2_header_free(struct qcow2_header *h);
/* The name of an incompatible feature bit from the feature table, or NULL. */
const char *qcow2_feature_name(const struct qcow2_header *h, unsigned type, unsigned bit,
                               char *buf, size_t len);
/* Write the incompatible feature bits (v3) and fdatasync. */
int qcow2_header_write_incompat(struct qcow2 *q, uint64_t incompat);
/* Rewrite cluster 0 (header, extensions, backing name) from q->h. */
int qcow2_header_rewrite(struct qcow2 *q);

/* ---- qcow2_cluster.c ---- */

/* Set up a metadata cache of n tables (buffers come on first use). */
int qcow2_cache_init(struct qcow2_cache *c, unsigned n, bool is_l2);
/* Free a cache (dirty tables are dropped: flush first). */
void qcow2_cache_free(struct qcow2_cache *c);
/* The cached table at host offset off, read from the file unless fresh (then zeroed). */
int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, bool fresh,
                    struct qcow2_cent **out);
/* Write every dirty table of c; *wrote tells whether anything was written. */
int qcow2_cache_flush(struct qcow2 *q, struct qcow2_cache *c, bool *wrote);
/* Forget a cached table (it was freed). */
void qcow2_cache_drop(struct qcow2_cache *c, uint64_t off);
/* pread the whole range; past the end of the file reads zeroes. */
int qcow2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t off);
/* pwrite the whole range (the image must be writable); tracks the file's end. */
int qcow2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t off);
/* fdatasync the image; clears the unsynced flags. */
int qcow2_sync(struct qcow2 *q);
/* Mark the image corrupt (bit in the header, read-only from now on); returns -EIO. */
int qcow2_corrupt(struct qcow2 *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Set L1 entry i (written back by qcow2_meta_flush). */
void qcow2_l1_set(struct qcow2 *q, uint64_t i, uint64_t v);
/* Check an L1 entry and return its L2 offset (0: none) in *l2. */
int qcow2_l1_check(struct qcow2 *q, uint64_t e, uint64_t *l2);

/* One run of the mapping: what qcow2_map found at a guest offset. */
enum qcow2_kind { QCOW2_K_UNALLOC, QCOW2_K_ZERO, QCOW2_K_DATA, QCOW2_K_COMPRESSED };
struct qcow2_map {
	enum qcow2_kind kind;
	uint64_t host;   /* DATA: host offset of the guest offset asked for */
	uint64_t entry;  /* the raw L2 entry of the first cluster */
	uint64_t len;    /* bytes of the run */
	bool copied;     /* DATA: the clusters can be written in place */
};

/* What an L2 entry is, checked (marks the image corrupt if it is invalid);
 * host is the data cluster (DATA, or a preallocated ZERO cluster; else 0). */
int qcow2_l2_classify(struct qcow2 *q, uint64_t e, enum qcow2_kind *kind, uint64_t *host);
/* Map guest [off, off + len) (len > 0, inside the disk) to its first run. */
int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, struct qcow2_map *m);
/* Write n bytes (inside one cluster) of src at guest off through allocation/COW. */
int qcow2_cow_write(struct qcow2 *q, uint64_t off, const uint8_t *src, uint64_t n);
/* qcow2_zero_clusters modes */
enum qcow2_zmode {
	QCOW2_Z_ZERO,       /* read as zeroes, keep an allocation for rewriting */
	QCOW2_Z_ZERO_UNMAP, /* read as zeroes, free the allocation */
	QCOW2_Z_DISCARD,    /* free the allocation (zero flag over a backing file) */
	QCOW2_Z_UNALLOC,    /* unallocated: the backing file shows through */
};

/* Apply mode to whole clusters [off, off + len) (off cluster-aligned; len too,
 * or reaching the end of the disk). */
int qcow2_zero_clusters(struct qcow2 *q, uint64_t off, uint64_t len, enum qcow2_zmode mode);
/* Read guest [off, off + len) into buf synchronously (backing and compressed too). */
int qcow2_read_sync(struct qcow2 *q, uint8_t *buf, uint64_t len, uint64_t off);
/* Write buf to guest [off, off + len) synchronously. */
int qcow2_write_sync(struct qcow2 *q, const uint8_t *buf, uint64_t len, uint64_t off);
/* Read n bytes at backing offset off (zeroes past its end). */
int qcow2_backing_read(struct qcow2 *q, uint8_t *buf, uint64_t n, uint64_t off);

/* Refuse (marking the image corrupt) a data write to [host, host + len) that
 * would land on metadata we know of. */
int qcow2_overlap_check(struct qcow2 *q, uint64_t host, uint64_t len);

/* ---- qcow2_refcount.c ---- */

/* Refcount idx of a refcount block buffer of 1 << order bit entries. */
uint64_t qcow2_rb_get(const uint8_t *b, uint32_t order, uint64_t idx);
/* Set refcount idx of a refcount block buffer to v (v must fit). */
void qcow2_rb_set(uint8_t *b, uint32_t order, uint64_t idx, uint64_t v);

/* The refcount of the cluster at index idx (0 when no refcount block covers it). */
int qcow2_rc_get(struct qcow2 *q, uint64_t idx, uint64_t *rc);
/* Add delta (+1/-1 or any) to the refcount of cluster idx. */
int qcow2_rc_add(struct qcow2 *q, uint64_t idx, int64_t delta);
/* Allocate one cluster (refcount 1); its host offset in *off. */
int qcow2_alloc(struct qcow2 *q, uint64_t *off);
/* Allocate n contiguous clusters at the end of the file. */
int qcow2_alloc_contig(struct qcow2 *q, uint64_t n, uint64_t *off);
/* Drop one reference from the cluster at host offset off once tables are on disk. */
int qcow2_free_later(struct qcow2 *q, uint64_t off);
/* Before the first metadata change with lazy refcounts: set the dirty bit. */
int qcow2_mark_dirty(struct qcow2 *q);
/* Before writing an L2 table / the L1 table: the refcounts it relies on are on disk. */
int qcow2_order_l2(struct qcow2 *q);
/* Write back all metadata in a crash-safe order and apply pending reference drops. */
int qcow2_meta_flush(struct qcow2 *q);
/* Replace the refcount structures with new ones holding refs[] (n clusters). */
int qcow2_rc_rebuild(struct qcow2 *q, const uint32_t *refs, uint64_t n);

/* ---- qcow2_compress.c ---- */

/* Write one whole guest cluster at off (cluster-aligned) compressed, or
 * normally when it does not shrink. */
int qcow2_compress_write(struct qcow2 *q, uint64_t off, const uint8_t *src);
/* Point the L2 entry of guest offset off at v, releasing what it held
 * (qcow2_cluster.c; the table is made writable first). */
int qcow2_l2_replace(struct qcow2 *q, uint64_t off, uint64_t v);
/* Decompress the compressed cluster of L2 entry e into q->zbuf. */
int qcow2_decompress(struct qcow2 *q, uint64_t e);
/* The host byte range [*off, *off + *len) a compressed L2 entry points at. */
void qcow2_compressed_range(const struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len);
/* Free the decompression state. */
void qcow2_compress_free(struct qcow2 *q);

/* ---- qcow2_snapshot.c ---- */

/* One parsed snapshot table entry. */
struct qcow2_snap {
	uint64_t l1_off;
	uint32_t l1_size;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint32_t vm_state32;      /* the 32-bit field of the entry */
	uint64_t vm_state_size;   /* the 64-bit one from the extra data when present */
	uint64_t disk_size;       /* from the extra data; else the image's size */
	uint64_t icount;          /* from the extra data; else UINT64_MAX (none) */
	uint32_t extra_len;
	uint8_t *extra;
	uint16_t id_len, name_len;
	char *id, *name;          /* NUL-terminated copies */
};

/* The whole snapshot table. */
struct qcow2_snaps {
	struct qcow2_snap *s;
	uint32_t n;
	uint64_t len;             /* bytes, as laid out in the file */
};

/* Parse the snapshot table (every length checked against the table's
 * bounds, nothing allocated before the file could hold it); 0 or -EINVAL,
 * -ENOMEM, -EIO. */
int qcow2_snap_load(struct qcow2 *q, struct qcow2_snaps *t);
/* Free what qcow2_snap_load allocated. */
void qcow2_snap_free(struct qcow2_snaps *t);
/* Read the snapshot table: for each entry call fn (may be NULL); 0 or -errno. */
int qcow2_snap_walk(struct qcow2 *q,
                    int (*fn)(struct qcow2 *q, void *opaque, uint64_t l1_off, uint32_t l1_size,
                              const struct qcow2_snapshot *s),
                    void *opaque, uint64_t *table_len);

/* ---- qcow2_check.c ---- */

/* Rebuild refcounts of a dirty image at open (repair all, quietly). */
int qcow2_repair_dirty(struct qcow2 *q);

#endif
