/* Post-copy live migration, destination side: userfaultfd on guest RAM.
 *
 * migrate_receive() opens the userfaultfd when the source announces post-copy
 * (PC_ADVISE) and keeps the owed-page bitmap (PC_OWED). Then, before any
 * device state is loaded: postcopy_in_start() drops the stale copies of the
 * owed pages, registers the whole RAM mapping (MISSING mode) and starts the
 * thread that serves faults: an owed page is requested from the source, any
 * other missing page was zero there and gets UFFDIO_ZEROPAGE. From then on
 * pages only go in with UFFDIO_COPY / UFFDIO_ZEROPAGE. Once the state is
 * loaded, postcopy_in_go() makes the thread answer 'A' (the source will not
 * resume after that); postcopy_in_abort() makes it answer 'N' (it does).
 * After 'A' a broken stream cannot be recovered: the process exits 1 with
 * one line rather than leaving the guest blocked on a fault. */
#ifndef CVISOR_VM_POSTCOPY_IN_H
#define CVISOR_VM_POSTCOPY_IN_H

#include <stddef.h>
#include <stdint.h>

#include "vm/mem.h"
#include "vm/postcopy.h"

struct mstream;
struct json_object;
struct pc_in;

/* Open a userfaultfd able to serve KVM's faults (the syscall, else
 * /dev/userfaultfd). The fd, or -errno with one line in err. */
int postcopy_uffd_open(char *err, size_t errlen);

/* Set up from the uffd (taken) and the owed pages (taken). NULL on ENOMEM. */
struct pc_in *postcopy_in_new(int uffd, struct pc_map *owed);
/* Discard the owed pages, register mem, start the thread; it takes conn. */
int postcopy_in_start(struct pc_in *pc, struct mstream *conn, const struct guest_mem *mem,
                      char *err, size_t errlen);
/* The state is loaded: answer 'A' (the guest may run once this returns). */
void postcopy_in_go(struct pc_in *pc);
/* Loading failed: answer 'N' + reason, stop and free everything (pc may not
 * have been started). */
void postcopy_in_abort(struct pc_in *pc, const char *reason);
/* The VM ended: stop the thread (pages still owed stay so), unregister, free. */
void postcopy_in_finish(struct pc_in *pc);
/* Progress for GET /v1/vm ("incoming_postcopy"), when one runs or ran. */
void postcopy_in_info(struct json_object *out);

#endif
