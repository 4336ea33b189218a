/* Snapshots: DIR/state.bin (versioned, checksummed: configuration, vCPUs,
 * in-kernel devices, every device's state) and DIR/memory.bin (guest RAM,
 * sparse: zero pages are holes). Restore maps memory.bin privately, so
 * restore time does not grow with the guest's size. */
#ifndef CVISOR_VM_SNAPSHOT_H
#define CVISOR_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/sbuf.h"

#define SNAPSHOT_STATE "state.bin"
#define SNAPSHOT_MEMORY "memory.bin"

struct vm;

struct snapshot_file {
	uint8_t *data;
	size_t len;
	struct sbuf body; /* reader over the checked body */
	int argc;
	char **argv; /* the saved `cvisor run` options (point into data) */
	uint64_t mem_size;
	uint32_t cpus;
};

/* Read DIR/state.bin and check magic, version and checksum; parse the saved
 * options. -errno with a one-line reason in err. */
int snapshot_open(const char *dir, struct snapshot_file *f, char *err, size_t errlen);
/* Free what snapshot_open allocated. */
void snapshot_close(struct snapshot_file *f);
/* The options to run a restored VM with: the saved ones, minus lists
 * (--disk, --net) given again in argv, followed by argv[1..]. *out_argv is
 * calloc'd (free it; the strings are borrowed). */
int snapshot_merge_args(const struct snapshot_file *f, int argc, char **argv, int *out_argc,
                        char ***out_argv);
/* Whether argv[*i] is --restore (advancing *i past its value). */
bool snapshot_arg_is_restore(int argc, char **argv, int *i);
/* Append the VM's `cvisor run` options (u32 count, then u32 length + bytes
 * each), without --restore/--incoming: snapshots and migration streams. */
void snapshot_put_args(struct vm *vm, struct sbuf *b);
/* Build the whole state file of a paused VM (header, body, checksum) in *out. */
int snapshot_build_state(struct vm *vm, struct sbuf *out, char *err, size_t errlen);
/* Check and parse a state file image (takes ownership of data, malloc'd). */
int snapshot_parse(struct snapshot_file *f, uint8_t *data, size_t len, char *err,
                   size_t errlen);
/* Write a snapshot of a paused VM into DIR (created if missing). With
 * disk_overlay, every writable disk's image is frozen as the disk state of
 * the snapshot and the VM goes on writing to a new qcow2 overlay over it
 * (virtio_blk_overlay_prepare): the snapshot records the frozen image with
 * overlay=on, so that a restore runs on a fresh overlay of its own and the
 * image is never written again. All disks switch, once the snapshot is
 * written, or none does. */
int vm_snapshot_save(struct vm *vm, const char *dir, bool disk_overlay, char *err,
                     size_t errlen);
/* Disk i of the VM runs on another image now (an overlay): make the VM's
 * options (its --disk value: reboots, snapshots, migration, GET /v1/vm) name
 * that image, with its format, instead of the one given. 0 or -errno. */
int vm_disk_option_update(struct vm *vm, unsigned i, char *err, size_t errlen);
/* Load vCPU, in-kernel and device state from f into a VM created for restore
 * (its memory already mapped from memory.bin). */
int vm_snapshot_load(struct vm *vm, struct snapshot_file *f, char *err, size_t errlen);

#endif
