/* `cvisor img`: create, inspect, check and convert disk images (raw, qcow2),
 * with qemu-img's flags where the two overlap. Everything goes through the
 * block layer's drivers, driven synchronously (img_io.c). */
#ifndef CVISOR_IMG_IMG_H
#define CVISOR_IMG_IMG_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define IMG_EXIT_OK 0
#define IMG_EXIT_FAIL 1  /* the operation failed */
#define IMG_EXIT_USAGE 2 /* bad input: one line on stderr */

/* `cvisor img ARGS` (argv[0] is "img"); returns the exit status. */
int img_main(int argc, char **argv);

/* An open image driven synchronously. */
struct img {
	struct aio *aio;
	struct blk_disk *d;
	char path[4096];
	char fmt[8]; /* "raw" or "qcow2" */
};

/* Open path as fmt (NULL: detect from the magic) with QCOW2_OPEN_* flags for
 * qcow2; prints one line and returns -errno on failure. */
int img_open(struct img *im, const char *path, const char *fmt, bool readonly, unsigned qflags);
/* Close an image opened by img_open (a zeroed struct is fine). */
void img_close(struct img *im);
/* Read len bytes at off (synchronously); 0 or -errno. */
int img_read(struct img *im, void *buf, uint64_t len, uint64_t off);
/* Write len bytes at off; 0 or -errno. */
int img_write(struct img *im, const void *buf, uint64_t len, uint64_t off);
/* Zero [off, off + len), deallocating it if unmap; 0 or -errno. */
int img_zero(struct img *im, uint64_t len, uint64_t off, bool unmap);
/* Discard [off, off + len); 0 or -errno. */
int img_discard(struct img *im, uint64_t len, uint64_t off);
/* Make what was written durable; 0 or -errno. */
int img_flush(struct img *im);
/* Print "cvisor img: MSG" on stderr (one line). */
void img_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a size with qemu-img's suffixes (k, M, G, T, P, E; bare: bytes). */
int img_parse_size(const char *s, uint64_t *out);
/* Where a backing name given for image points (relative to its directory). */
void img_backing_path(char *out, size_t len, const char *image, const char *backing);
/* Whether len bytes at p are all zero. */
bool img_is_zero(const void *p, uint64_t len);

struct qcow2_create_opts;
/* Parse create's -o list (cluster_size, compat, refcount_bits, lazy_refcounts) into o. */
int img_parse_create_opts(const char *arg, struct qcow2_create_opts *o);

/* The subcommands (argv[0] is the subcommand's name); each returns the exit status. */
/* convert [-f FMT] [-O FMT] [-o OPTS] SRC DST */
int img_cmd_convert(int argc, char **argv);
/* commit [-f FMT] [-d] FILE */
int img_cmd_commit(int argc, char **argv);
/* rebase [-f FMT] [-u] -b BASE [-F FMT] FILE */
int img_cmd_rebase(int argc, char **argv);
/* resize [-f FMT] FILE [+]SIZE */
int img_cmd_resize(int argc, char **argv);
/* write [-f FMT] [-P BYTE] [-z [-u]] [-d] FILE OFFSET LEN (test helper) */
int img_cmd_write(int argc, char **argv);
/* stress [options] FILE: seeded writes for crash tests, and their verifier */
int img_cmd_stress(int argc, char **argv);
/* `img bench`: random 4 KiB reads or writes through the driver, in-process. */
int img_cmd_bench(int argc, char **argv);

#endif
