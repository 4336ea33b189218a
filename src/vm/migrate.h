/* Live migration, pre-copy, over TCP. The stream: a header, then sections
 * (u32 type, u64 length, payload), each checked on receipt:
 *   CONFIG  the source's `cvisor run` options and the memory size
 *   RAM     records { u64 offset | flags, 4 KiB page unless ZERO } in any number
 *   STATE   the snapshot state file (vCPUs, devices ...; checksummed)
 *   DONE    the destination answers one byte: 'A' took over, 'N' + reason failed
 * The source keeps running until the destination answered 'A'; a cancel, an
 * error or a broken connection at any point leaves it running untouched. */
#ifndef CVISOR_VM_MIGRATE_H
#define CVISOR_VM_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

#include "vm/config.h"
#include "vm/mem.h"

struct vm;
struct json_object;
struct snapshot_file;

#define MIGRATE_DEFAULT_DOWNTIME_MS 50

/* Start migrating vm to "tcp:HOST:PORT" in the background. -EBUSY when one
 * runs, -EINVAL for a bad address, -ENOTSUP for a device that cannot move. */
int vm_migrate_start(struct vm *vm, const char *to, uint64_t max_downtime_ms, char *err,
                     size_t errlen);
/* Cancel the running migration (the VM goes on). -EALREADY when none runs. */
int vm_migrate_cancel(struct vm *vm);
/* Progress for GET /v1/vm (adds a "migration" member when there is one). */
void vm_migrate_info(struct vm *vm, struct json_object *out);
/* Tear down (joins the thread). */
void vm_migrate_destroy(struct vm *vm);

/* Destination, step 1: listen on "tcp:HOST:PORT", take one connection, read
 * the source's options and memory size; *out_argc and *out_argv are those merged
 * with ours (argv). The VM is created from them before its RAM arrives. */
int migrate_accept(const char *addr, int argc, char **argv, int *conn, uint64_t *mem_size,
                   int *out_argc, char ***out_argv, char *err, size_t errlen);
/* Step 2: receive RAM into mem (the new VM's, its vCPUs not running) up to the
 * state, which lands in *snap. */
int migrate_receive(int conn, const struct guest_mem *mem, struct snapshot_file *snap, char *err,
                    size_t errlen);
/* Tell the source whether we took over (ok) or not (reason). Closes conn. */
void migrate_incoming_reply(int conn, bool ok, const char *reason);

#endif
