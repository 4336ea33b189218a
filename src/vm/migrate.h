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

/* Destination: listen on "tcp:HOST:PORT", take one connection and receive a
 * VM up to its STATE. On success fills *mem (guest RAM as sent), *snap (the
 * state), *argc and *argv (the source's options merged with ours) and *conn (to
 * answer on with migrate_incoming_reply). -errno with a reason in err. */
int migrate_incoming(const char *addr, int argc, char **argv, struct guest_mem *mem,
                     struct snapshot_file *snap, int *out_argc, char ***out_argv, int *conn,
                     char *err, size_t errlen);
/* Tell the source whether we took over (ok) or not (reason). Closes conn. */
void migrate_incoming_reply(int conn, bool ok, const char *reason);

#endif
