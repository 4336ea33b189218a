/* The block layer: disk image drivers (raw today, qcow2 later) behind one
 * small ops table, all I/O asynchronous through the engine in block/aio.c.
 *
 * A caller owns a struct blk_req for every request it issues, fills done and
 * opaque, and calls one of the blk_* wrappers below. A wrapper returns 0 when
 * the request was accepted, and then done(req, result) runs exactly once,
 * later, from aio_poll() or aio_drain() (never from inside the wrapper);
 * result is the byte count (read, write, discard, write_zeroes), 0 (flush) or
 * -errno. A negative return means the request was not accepted and no
 * callback will come.
 *
 * Image files are hostile input (see the threat model): drivers check every
 * range they are asked for against the image size, never trust metadata, and
 * lock the image so that two VMs never write it at once. */
#ifndef CVISOR_BLOCK_BLOCK_H
#define CVISOR_BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLK_SECTOR_SIZE 512

struct aio;
struct blk_disk;
struct blk_req;

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,
	BLK_OP_DISCARD,
	BLK_OP_WRITE_ZEROES,
};

/* blk_req.flags for BLK_OP_WRITE_ZEROES: the range may be deallocated */
#define BLK_REQ_UNMAP 1u

/* Completion: result is bytes done, 0 for a flush, or -errno. */
typedef void (*blk_done_fn)(struct blk_req *req, int64_t result);

struct blk_req {
	/* set by the caller before submitting */
	blk_done_fn done;
	void *opaque;
	/* set by the driver; the engine owns the rest until done() runs */
	enum blk_op op;
	const struct iovec *iov; /* read/write buffers: not modified, kept alive by the caller */
	int iovcnt;
	uint64_t offset; /* bytes into the file */
	uint64_t len;    /* bytes: computed from iov for read/write */
	unsigned flags;  /* BLK_REQ_* */
	/* engine state */
	int fd;
	uint64_t pos;           /* bytes done so far */
	int stage;              /* write_zeroes: which method is being tried */
	unsigned retries;       /* -EINTR/-EAGAIN resubmissions */
	struct iovec *rest_iov; /* what is left after a short transfer (allocated) */
	int rest_cnt;
	struct iovec zero_iov;  /* write_zeroes written as data */
	int64_t result;
	struct blk_req *next;
};

/* A format driver. Every op but open takes the disk the driver returned. */
struct blk_driver {
	const char *name; /* "raw", "qcow2": the format= value */
	/* Open and lock the image (a writer excludes everyone, readers exclude
	 * writers); requests go through aio. On failure returns -errno with one
	 * line naming the image in err. */
	int (*open)(struct blk_disk **out, const char *path, bool readonly, struct aio *aio,
	            char *err, size_t errlen);
	/* Release the lock and free the disk; nothing may be in flight. */
	void (*close)(struct blk_disk *d);
	/* Guest-visible size in bytes. */
	uint64_t (*size)(struct blk_disk *d);
	/* Read / write iov (not larger than IOV_MAX entries) at byte offset off. */
	int (*readv)(struct blk_disk *d, struct blk_req *req, const struct iovec *iov, int iovcnt,
	             uint64_t off);
	int (*writev)(struct blk_disk *d, struct blk_req *req, const struct iovec *iov, int iovcnt,
	              uint64_t off);
	/* Make every completed write durable (fdatasync for files). */
	int (*flush)(struct blk_disk *d, struct blk_req *req);
	/* Hint that [off, off + len) is unused; what it reads back as is undefined. */
	int (*discard)(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len);
	/* Make [off, off + len) read back as zeroes; unmap allows deallocating it. */
	int (*write_zeroes)(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len,
	                    bool unmap);
	/* Drop (locked=false) or take back (true) the image lock while the disk
	 * stays open: live migration hands images over at switch-over. NULL when
	 * the driver cannot; -EBUSY when someone else took the image meanwhile. */
	int (*set_locked)(struct blk_disk *d, bool locked);
};

/* Open images without locking them until blk_take_deferred_locks (a migration
 * destination, while the source still holds the locks). */
void blk_defer_locks(bool on);
/* Whether image locks are being held back (a migration's destination). */
bool blk_locks_deferred(void);
/* Lock every image opened since blk_defer_locks(true). 0 or -EBUSY with a reason. */
int blk_take_deferred_locks(char *err, size_t errlen);
/* Change an open image file's OFD lock: unlock, or the read/write lock again. */
int blk_file_set_locked(int fd, bool readonly, bool locked);

/* What every driver's disk starts with. */
struct blk_disk {
	const struct blk_driver *drv;
	struct aio *aio;
	bool readonly;
	uint32_t block_size; /* the host file system's preferred I/O size (a hint) */
};

/* The raw format: the image file holds the disk's bytes as they are. */
extern const struct blk_driver blk_raw_driver;

/* Open path (O_RDONLY or O_RDWR, close-on-exec) as a regular file or block
 * device and take an OFD lock on it: F_WRLCK for read-write, F_RDLCK for
 * read-only. Shared by the format drivers. 0 with *fd set, or -errno with
 * one line in err (-EBUSY: "disk P is in use by another process (locked)"). */
int blk_file_open(const char *path, bool readonly, int *fd, char *err, size_t errlen);

/* The disk's guest-visible size in bytes. */
static inline uint64_t blk_size(struct blk_disk *d)
{
	return d->drv->size(d);
}

/* Read into iov from byte offset off; done(req, bytes or -errno) later. */
static inline int blk_readv(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                            int iovcnt, uint64_t off)
{
	return d->drv->readv(d, req, iov, iovcnt, off);
}

/* Write iov at byte offset off; done(req, bytes or -errno) later. */
static inline int blk_writev(struct blk_disk *d, struct blk_req *req, const struct iovec *iov,
                             int iovcnt, uint64_t off)
{
	return d->drv->writev(d, req, iov, iovcnt, off);
}

/* Make completed writes durable; done(req, 0 or -errno) later. */
static inline int blk_flush(struct blk_disk *d, struct blk_req *req)
{
	return d->drv->flush(d, req);
}

/* Discard [off, off + len); done(req, len or -errno) later. */
static inline int blk_discard(struct blk_disk *d, struct blk_req *req, uint64_t off, uint64_t len)
{
	return d->drv->discard(d, req, off, len);
}

/* Zero [off, off + len), deallocating it if unmap; done(req, len or -errno) later. */
static inline int blk_write_zeroes(struct blk_disk *d, struct blk_req *req, uint64_t off,
                                   uint64_t len, bool unmap)
{
	return d->drv->write_zeroes(d, req, off, len, unmap);
}

/* Close the disk (NULL is fine); nothing may be in flight. */
static inline void blk_close(struct blk_disk *d)
{
	if (d)
		d->drv->close(d);
}

#endif
