/* Live migration, pre-copy, over TCP. The stream (migrate_stream.h): hellos,
 * then sections, each checked on receipt (and with a pre-shared key,
 * authenticated with HMAC-SHA256):
 *   CONFIG  the source's `cvisor run` options and the memory size
 *           (the destination answers 'G', or 'N' + reason)
 *   RAM     records { u64 offset | flags, 4 KiB page unless ZERO } in any number
 *           (RAM_ZSTD: the same, zstd-compressed, when asked for)
 *   STATE   the snapshot state file (vCPUs, devices ...; checksummed)
 *   DONE    the destination answers 'A' took over, or 'N' + reason failed
 * The source keeps running until the destination answered 'A'; a cancel, an
 * error or a broken connection at any point leaves it running untouched. */
#ifndef CVISOR_VM_MIGRATE_H
#define CVISOR_VM_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/config.h"
#include "vm/mem.h"

struct vm;
struct json_object;
struct snapshot_file;
struct mstream;
struct pc_in;

#define MIGRATE_DEFAULT_DOWNTIME_MS 50
#define MIGRATE_MAX_BANDWIDTH_MBPS 100000 /* MB/s */

/* What to migrate with (PUT /v1/vm/migrate). */
struct migrate_params {
	const char *to;              /* "tcp:HOST:PORT" */
	const char *key_file;        /* pre-shared key file (absolute), NULL: no authentication */
	bool compress;               /* zstd on page sections */
	uint64_t max_bandwidth_mbps; /* cap in MB/s (10^6 bytes/s) while the guest runs; 0: none */
	uint64_t max_downtime_ms;    /* 0: MIGRATE_DEFAULT_DOWNTIME_MS */
	bool postcopy;               /* one pre-copy pass (two at most), then post-copy */
};

/* Start migrating vm in the background. -EBUSY when one runs, -EINVAL for a
 * bad address or key file, -ENOTSUP for a device that cannot move. */
int vm_migrate_start(struct vm *vm, const struct migrate_params *p, char *err, size_t errlen);
/* Cancel the running migration (the VM goes on). -EALREADY when none runs,
 * -EPERM after a post-copy switch-over (the guest runs on the destination). */
int vm_migrate_cancel(struct vm *vm);
/* True once the guest's state belongs to a destination (post-copy after the
 * switch, or a finished migration): the VM here must never resume. */
bool vm_migrate_handed_over(struct vm *vm);
/* A post-copy push is running: the guest runs on the destination and still
 * needs pages from here. */
bool vm_migrate_postcopy_pushing(struct vm *vm);
/* Progress for GET /v1/vm (adds a "migration" member when there is one). */
void vm_migrate_info(struct vm *vm, struct json_object *out);
/* Tear down (joins the thread). */
void vm_migrate_destroy(struct vm *vm);
/* Auto-converge, called by each vCPU thread before KVM_RUN: while the VM is
 * throttled to pct%, sleep pct/(100-pct) times as long as the vCPU ran since
 * *entered_ns (its last entry), so that it gets (100-pct)% of the time however
 * late the migration thread's kicks come. */
void migrate_throttle_vcpu(struct vm *vm, uint64_t *entered_ns);

/* Destination, step 1: read key_file (NULL: no key), listen on
 * "tcp:HOST:PORT", take one connection, agree on the stream, read the
 * source's options and memory size and tell it to go on; *out_argc and
 * *out_argv are those merged with ours (argv). The VM is created from them
 * before its RAM arrives. -EINVAL for bad usage (address, key file). */
int migrate_accept(const char *addr, const char *key_file, int argc, char **argv,
                   struct mstream **conn, uint64_t *mem_size, int *out_argc, char ***out_argv,
                   char *err, size_t errlen);
/* Step 2: receive RAM into mem (the new VM's, its vCPUs not running) up to the
 * state, which lands in *snap. For a post-copy migration *pc is set (else
 * NULL): start it (postcopy_in.h) before loading the state. */
int migrate_receive(struct mstream *conn, const struct guest_mem *mem, struct snapshot_file *snap,
                    struct pc_in **pc, char *err, size_t errlen);
/* Tell the source whether we took over (ok) or not (reason). Frees conn (NULL ok). */
void migrate_incoming_reply(struct mstream *conn, bool ok, const char *reason);

#endif
