/* The block I/O engine: io_uring (liburing) with an eventfd for completions,
 * or, when io_uring cannot be set up (seccomp, old kernel, missing opcodes),
 * a synchronous fallback that runs preadv/pwritev/fdatasync/fallocate from
 * aio_poll(). Either way a request completes through req->done() from
 * aio_poll() or aio_drain(), never from inside aio_submit().
 *
 * The engine is not thread-safe: its user serializes every call (virtio-blk
 * holds the device lock), which may come from different threads. The user
 * watches aio_fd() for EPOLLIN on its event loop and calls aio_poll() when it
 * is readable.
 *
 * Semantics of the operations (struct blk_req in block/block.h):
 *  read          short reads are resubmitted; end of file reads as zeroes
 *  write         short writes are resubmitted; no progress at all is -EIO
 *  flush         fdatasync
 *  discard       fallocate(PUNCH_HOLE | KEEP_SIZE); unsupported is success
 *  write_zeroes  fallocate(PUNCH_HOLE) with BLK_REQ_UNMAP, else ZERO_RANGE,
 *                and when the file system supports neither, writes zeroes */
#ifndef CVISOR_BLOCK_AIO_H
#define CVISOR_BLOCK_AIO_H

#include <stdbool.h>

#include "block/block.h"

/* aio_create flags */
#define AIO_SYNC 1u /* use the synchronous fallback even when io_uring works */

struct aio;

/* Create an engine keeping up to depth requests in the kernel (more wait in a
 * backlog). Falls back to synchronous I/O when io_uring is unusable. 0 or -errno. */
int aio_create(struct aio **out, unsigned depth, unsigned flags);
/* Free it; call aio_drain() first if anything may be in flight. */
void aio_destroy(struct aio *a);
/* The eventfd that becomes readable when aio_poll() has work. */
int aio_fd(const struct aio *a);
/* Whether requests go through io_uring (false: the synchronous fallback). */
bool aio_is_uring(const struct aio *a);
/* Requests accepted whose callback has not run yet. */
unsigned aio_inflight(const struct aio *a);
/* Start req (op, iov, offset, len, flags set) on fd. 0, or -errno and no callback. */
int aio_submit(struct aio *a, int fd, struct blk_req *req);
/* Accept req without doing any I/O: done(req, res) runs from the next
 * aio_poll() (drivers that finish a request synchronously). 0 or -EINVAL. */
int aio_complete_req(struct aio *a, struct blk_req *req, int64_t res);
/* Hold submissions back until aio_unplug() to hand a batch to the kernel at once. */
void aio_plug(struct aio *a);
/* Submit what was held back by aio_plug(). */
void aio_unplug(struct aio *a);
/* Run the callbacks of finished requests and move the rest along; returns how
 * many requests completed. Never blocks on I/O in io_uring mode. */
int aio_poll(struct aio *a);
/* Block until nothing is in flight, running callbacks as requests finish. */
void aio_drain(struct aio *a);
/* Make aio_fd() readable so that the user's handler runs once more. */
void aio_wake(struct aio *a);

#endif
