/* libFuzzer target for the receive side of the live-migration stream
 * (vm/migrate_stream.c, migrate_receive() in vm/migrate.c): section framing,
 * type limits, tags, RAM and zstd RAM records, section order, the state.
 *
 * Input: one flags byte, then the stream.
 *   flags bit 0  keyed: the rest is read as records { u8 type, u16 length,
 *                payload } that the harness sends through a sender with the
 *                receiver's session key, so that the parsing behind the tags
 *                is reached; with bit 1 only the first record goes, with one
 *                bit of its tag flipped, which must be refused
 *   flags bit 2  the rest goes to the source's answer reader instead
 *   otherwise    the rest is the raw stream after the hellos
 * Guest memory is 64 pages. Checks: no crash, no out-of-bounds access, no
 * leak, no allocation beyond the type limits; a refusal has a one-line reason. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vm/mem.h"
#include "vm/migrate.h"
#include "vm/migrate_stream.h"
#include "vm/postcopy_in.h"
#include "vm/snapshot.h"

#define MEM_PAGES 64
#define MAX_INPUT (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Re-frame records as tagged sections from a keyed sender on fd (the
 * receiver's peer, role `from`). With flip, only the first record goes, with
 * one bit of its tag changed. */
static void send_records(int fd, enum ms_role from, const uint8_t *p, size_t n, bool flip)
{
	static uint8_t wire[12 + MAX_INPUT + MS_TAG_LEN];
	struct mstream tx;
	int sv[2];

	if (flip && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (flip)
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int){ 4 << 20 }, sizeof(int));
	mstream_init(&tx, flip ? sv[0] : fd, from);
	tx.keyed = true;
	memset(tx.skey, 0x5c, sizeof(tx.skey));
	for (size_t i = 0; i + 3 <= n;) {
		uint32_t type = p[i];
		size_t len = (size_t)p[i + 1] | (size_t)p[i + 2] << 8;
		i += 3;
		if (len > n - i)
			len = n - i;
		if (mstream_send(&tx, type, p + i, len) < 0 || flip)
			break;
		i += len;
	}
	if (flip) {
		ssize_t got = tx.seq_out ? recv(sv[1], wire, sizeof(wire), MSG_DONTWAIT) : 0;
		if (got > 0) {
			wire[got - 1] ^= 1; /* the tag's last byte */
			if (write(fd, wire, (size_t)got) != got)
				abort();
		}
		close(sv[1]);
	} else {
		tx.fd = -1; /* the caller's */
	}
	mstream_close(&tx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ram[MEM_PAGES * 4096];
	struct guest_mem mem = { .base = ram, .size = sizeof(ram) };
	struct snapshot_file snap;
	char err[256];
	int sv[2];

	if (size < 1 || size > MAX_INPUT)
		return 0;
	uint8_t flags = data[0];
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int buf = 4 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	struct mstream *rx = calloc(1, sizeof(*rx));
	if (!rx)
		abort();
	mstream_init(rx, sv[0], (flags & 4) ? MS_SOURCE : MS_DEST);
	if (flags & 1) {
		rx->keyed = true;
		memset(rx->skey, 0x5c, sizeof(rx->skey));
		send_records(sv[1], (flags & 4) ? MS_DEST : MS_SOURCE, data, size, flags & 2);
	} else if (size && write(sv[1], data, size) != (ssize_t)size) {
		abort();
	}
	close(sv[1]);

	if (flags & 4) {
		int code = mstream_recv_answer(rx, 0, err, sizeof(err));
		if (code > 0 && code != 'G' && code != 'A' && code != 'N')
			__builtin_trap();
		if (code > 0 && (flags & 3) == 3)
			__builtin_trap(); /* a damaged tag went through */
		if (memchr(err, '\n', strlen(err)))
			__builtin_trap();
		mstream_close(rx);
		free(rx);
		return 0;
	}
	err[0] = '\0';
	struct pc_in *pc = NULL;
	int rc = migrate_receive(rx, &mem, &snap, &pc, err, sizeof(err));
	if (rc == 0) {
		if (!snap.data)
			__builtin_trap(); /* DONE before the state */
		snapshot_close(&snap);
		postcopy_in_abort(pc, "fuzz"); /* never started: only freed */
		if ((flags & 3) == 3)
			__builtin_trap(); /* a damaged tag went through */
	} else if (!err[0] || strchr(err, '\n')) {
		__builtin_trap();
	}
	mstream_close(rx);
	free(rx);
	return 0;
}
