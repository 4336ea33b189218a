/* Unit tests for the live-migration stream (vm/migrate_stream.c), over
 * socketpairs, no KVM: hellos and keys on one side only, section framing and
 * limits, HMAC-SHA256 against tampering, reordering, dropping, replay and
 * reflection, zstd page sections and their bounds, RAM records, key files.
 *
 * A "tap" stands between the two ends when a test needs to change bytes:
 * the receiver's socket is swapped for a fresh socketpair after the
 * handshake, and the test writes there what it wants the receiver to see. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zstd.h>

#include "vm/migrate_stream.h"

#define KEY_A "0123456789abcdef-the-first-key"
#define KEY_B "0123456789abcdef-another-key!!"

struct side {
	struct mstream s;
	const char *key; /* NULL: none */
	int rc;
	char err[256];
};

static void *handshake_thread(void *arg)
{
	struct side *d = arg;
	d->rc = mstream_handshake(&d->s, (const uint8_t *)d->key, d->key ? strlen(d->key) : 0,
	                          d->err, sizeof(d->err));
	return NULL;
}

/* A connected source and destination; both handshakes run (the destination's
 * in a thread, since each side sends first and then reads). */
static void pair_up(struct side *src, struct side *dst, const char *ksrc, const char *kdst)
{
	int sv[2];
	pthread_t t;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(src, 0, sizeof(*src));
	memset(dst, 0, sizeof(*dst));
	mstream_init(&src->s, sv[0], MS_SOURCE);
	mstream_init(&dst->s, sv[1], MS_DEST);
	src->key = ksrc;
	dst->key = kdst;
	assert_int_equal(pthread_create(&t, NULL, handshake_thread, dst), 0);
	handshake_thread(src);
	pthread_join(t, NULL);
}

static void close_pair(struct side *a, struct side *b)
{
	mstream_close(&a->s);
	mstream_close(&b->s);
}

/* Everything that is waiting to be read on s's socket (non-blocking). */
static size_t drain(struct mstream *s, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(s->fd, buf + n, cap - n, MSG_DONTWAIT);
		if (r <= 0)
			return n;
		n += (size_t)r;
	}
}

/* Swap s's socket for a new one fed with bytes[0..n) (then end of stream). */
static void feed(struct mstream *s, const uint8_t *bytes, size_t n)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], bytes, n), (ssize_t)n);
	close(sv[1]);
	close(s->fd);
	s->fd = sv[0];
}

static void test_plain_round_trip(void **state)
{
	struct side a, b;
	uint8_t *data;
	uint64_t len;
	uint32_t type;
	char reason[64];

	(void)state;
	pair_up(&a, &b, NULL, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_false(a.s.keyed);
	assert_int_equal(mstream_send(&a.s, MS_CONFIG, "hello", 5), 0);
	assert_int_equal(mstream_send(&a.s, MS_DONE, "", 0), 0);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
	assert_int_equal(type, MS_CONFIG);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	free(data);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
	assert_int_equal(type, MS_DONE);
	assert_int_equal(len, 0);
	free(data);
	/* 12-byte header, no tag; the hello counted too */
	assert_int_equal(a.s.bytes_out, MS_HELLO_LEN + 12 + 5 + 12);
	assert_int_equal(mstream_send_answer(&b.s, 'G', NULL), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), 'G');
	assert_string_equal(reason, "");
	close_pair(&a, &b);
}

static void test_keyed_round_trip(void **state)
{
	struct side a, b;
	uint8_t *data;
	uint64_t len;
	uint32_t type;
	char reason[64];

	(void)state;
	pair_up(&a, &b, KEY_A, KEY_A);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_true(a.s.keyed && b.s.keyed);
	assert_memory_equal(a.s.skey, b.s.skey, sizeof(a.s.skey));
	for (int i = 0; i < 5; i++) {
		char msg[16];
		snprintf(msg, sizeof(msg), "section %d", i);
		assert_int_equal(mstream_send(&a.s, MS_CONFIG, msg, strlen(msg)), 0);
		assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
		assert_int_equal(type, MS_CONFIG);
		assert_int_equal(len, strlen(msg));
		assert_memory_equal(data, msg, len);
		free(data);
	}
	assert_int_equal(a.s.seq_out, 5);
	assert_int_equal(b.s.seq_in, 5);
	assert_int_equal(a.s.bytes_out, MS_HELLO_LEN + 5 * (12 + 9 + MS_TAG_LEN));
	/* the other direction has its own sequence */
	assert_int_equal(mstream_send_answer(&b.s, 'A', NULL), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), 'A');
	close_pair(&a, &b);
}

static void test_fresh_session_keys(void **state)
{
	struct side a, b, c, d;

	(void)state;
	pair_up(&a, &b, KEY_A, KEY_A);
	pair_up(&c, &d, KEY_A, KEY_A);
	assert_int_equal(a.rc | b.rc | c.rc | d.rc, 0);
	/* same key, new nonces: another session key */
	assert_memory_not_equal(a.s.skey, c.s.skey, sizeof(a.s.skey));
	close_pair(&a, &b);
	close_pair(&c, &d);
}

static void test_key_on_one_side(void **state)
{
	struct side a, b;

	(void)state;
	pair_up(&a, &b, KEY_A, NULL);
	assert_int_equal(a.rc, -EPERM);
	assert_int_equal(b.rc, -EPERM);
	assert_non_null(strstr(a.err, "the destination has no key"));
	assert_non_null(strstr(b.err, "the source uses a key"));
	close_pair(&a, &b);

	pair_up(&a, &b, NULL, KEY_A);
	assert_int_equal(a.rc, -EPERM);
	assert_int_equal(b.rc, -EPERM);
	assert_non_null(strstr(a.err, "the destination requires a key"));
	assert_non_null(strstr(b.err, "the source sent no key"));
	close_pair(&a, &b);
}

static void test_wrong_key(void **state)
{
	struct side a, b;
	uint8_t *data = (uint8_t *)"x";
	uint64_t len;
	uint32_t type;
	char reason[128];

	(void)state;
	pair_up(&a, &b, KEY_A, KEY_B);
	assert_int_equal(a.rc | b.rc, 0); /* the hellos cannot tell */
	assert_int_equal(mstream_send(&a.s, MS_CONFIG, "options", 7), 0);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EBADMSG);
	assert_null(data);
	assert_int_equal(b.s.seq_in, 0); /* the number of the section that failed */
	/* its refusal does not authenticate at the source either, but is reported */
	assert_int_equal(mstream_send_answer(&b.s, 'N', "keys\ndiffer"), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), -EBADMSG);
	assert_string_equal(reason, "keys?differ");
	close_pair(&a, &b);
}

static void test_bad_hellos(void **state)
{
	struct side a;
	uint8_t h[MS_HELLO_LEN] = { 0 };
	int sv[2];

	(void)state;
	/* a version 1 source: magic right, version 1, then its configuration */
	memcpy(h, MS_MAGIC, 8);
	h[8] = 1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], h, sizeof(h)), (ssize_t)sizeof(h));
	mstream_init(&a.s, sv[0], MS_DEST);
	assert_int_equal(mstream_handshake(&a.s, NULL, 0, a.err, sizeof(a.err)), -EPROTO);
	assert_non_null(strstr(a.err, "version 1, this cvisor 2"));
	mstream_close(&a.s);
	close(sv[1]);

	/* not cvisor at all */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n.", 28), 28);
	mstream_init(&a.s, sv[0], MS_DEST);
	assert_int_equal(mstream_handshake(&a.s, NULL, 0, a.err, sizeof(a.err)), -EPROTO);
	assert_non_null(strstr(a.err, "not a cvisor migration source"));
	mstream_close(&a.s);
	close(sv[1]);

	/* a destination talking to a destination */
	memcpy(h, MS_MAGIC, 8);
	h[8] = MS_VERSION;
	h[9] = MS_HELLO_DEST;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], h, sizeof(h)), (ssize_t)sizeof(h));
	mstream_init(&a.s, sv[0], MS_DEST);
	assert_int_equal(mstream_handshake(&a.s, NULL, 0, a.err, sizeof(a.err)), -EPROTO);
	mstream_close(&a.s);
	close(sv[1]);

	/* a peer that hangs up mid-hello */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(write(sv[1], MS_MAGIC, 8), 8);
	shutdown(sv[1], SHUT_WR);
	mstream_init(&a.s, sv[0], MS_SOURCE);
	assert_int_equal(mstream_handshake(&a.s, NULL, 0, a.err, sizeof(a.err)), -ECONNRESET);
	assert_non_null(strstr(a.err, "before its hello"));
	mstream_close(&a.s);
	close(sv[1]);
}

/* Flip one bit at each offset of a keyed section: every change is refused. */
static void test_tamper_every_byte(void **state)
{
	struct side a, b;
	uint8_t wire[256], copy[256], *data;
	uint64_t len;
	uint32_t type;

	(void)state;
	pair_up(&a, &b, KEY_A, KEY_A);
	assert_int_equal(mstream_send(&a.s, MS_CONFIG, "abcdefgh", 8), 0);
	size_t n = drain(&b.s, wire, sizeof(wire));
	assert_int_equal(n, 12 + 8 + MS_TAG_LEN);
	uint64_t seq = b.s.seq_in;
	for (size_t i = 0; i < n; i++) {
		memcpy(copy, wire, n);
		copy[i] ^= 0x04;
		feed(&b.s, copy, n);
		b.s.seq_in = seq;
		data = NULL;
		int rc = mstream_recv(&b.s, &type, &data, &len);
		/* a changed header may also be an unknown type, too long, or short */
		assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -EMSGSIZE || rc == -ECONNRESET);
		assert_null(data);
	}
	/* untouched, it passes */
	feed(&b.s, wire, n);
	b.s.seq_in = seq;
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
	free(data);
	close_pair(&a, &b);
}

static void test_reorder_drop_replay(void **state)
{
	struct side a, b;
	uint8_t wire[512], *data;
	uint64_t len;
	uint32_t type;

	(void)state;
	pair_up(&a, &b, KEY_A, KEY_A);
	assert_int_equal(mstream_send(&a.s, MS_CONFIG, "one", 3), 0);
	assert_int_equal(mstream_send(&a.s, MS_CONFIG, "two", 3), 0);
	size_t n = drain(&b.s, wire, sizeof(wire)), one = 12 + 3 + MS_TAG_LEN;
	assert_int_equal(n, 2 * one);

	/* two before one */
	uint8_t swapped[512];
	memcpy(swapped, wire + one, one);
	memcpy(swapped + one, wire, one);
	feed(&b.s, swapped, n);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EBADMSG);

	/* one dropped */
	b.s.seq_in = 0;
	feed(&b.s, wire + one, one);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EBADMSG);

	/* one twice */
	b.s.seq_in = 0;
	memcpy(swapped, wire, one);
	memcpy(swapped + one, wire, one);
	feed(&b.s, swapped, n);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
	free(data);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EBADMSG);

	close_pair(&a, &b);

	/* replayed into a new session with the same key */
	struct side c, d;
	pair_up(&c, &d, KEY_A, KEY_A);
	feed(&d.s, wire, n);
	assert_int_equal(mstream_recv(&d.s, &type, &data, &len), -EBADMSG);
	close_pair(&c, &d);

	/* reflected: a section the destination sent, fed back to it (same
	 * sequence number, same key: only the direction differs) */
	pair_up(&c, &d, KEY_A, KEY_A);
	assert_int_equal(mstream_send(&d.s, MS_CONFIG, "one", 3), 0);
	uint8_t back[128];
	size_t m = drain(&c.s, back, sizeof(back));
	assert_int_equal(m, one);
	feed(&d.s, back, m);
	assert_int_equal(mstream_recv(&d.s, &type, &data, &len), -EBADMSG);
	close_pair(&c, &d);
}

static void test_limits(void **state)
{
	struct side a, b;
	uint8_t hdr[12], *data;
	uint64_t len;
	uint32_t type;

	(void)state;
	assert_int_equal(mstream_max_len(MS_DONE), 0);
	assert_int_equal(mstream_max_len(MS_RAM), MS_RAM_MAX);
	assert_int_equal(mstream_max_len(99), UINT64_MAX);
	pair_up(&a, &b, NULL, NULL);
	/* an unknown type, a RAM section over its limit, a huge state: refused
	 * before anything is allocated or read */
	type = 99;
	len = 1;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	feed(&b.s, hdr, sizeof(hdr));
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EPROTO);
	type = MS_RAM;
	len = MS_RAM_MAX + 1;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	feed(&b.s, hdr, sizeof(hdr));
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EMSGSIZE);
	type = MS_STATE;
	len = UINT64_MAX;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	feed(&b.s, hdr, sizeof(hdr));
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EMSGSIZE);
	/* a DONE with a payload */
	type = MS_DONE;
	len = 1;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	feed(&b.s, hdr, sizeof(hdr));
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -EMSGSIZE);
	/* truncated payload */
	type = MS_CONFIG;
	len = 100;
	uint8_t part[40] = { 0 };
	memcpy(part, &type, 4);
	memcpy(part + 4, &len, 8);
	feed(&b.s, part, sizeof(part));
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), -ECONNRESET);
	close_pair(&a, &b);
}

static void test_answers(void **state)
{
	struct side a, b;
	char reason[16];

	(void)state;
	pair_up(&a, &b, NULL, NULL);
	/* nothing comes */
	assert_int_equal(mstream_recv_answer(&a.s, 10, reason, sizeof(reason)), -ETIMEDOUT);
	/* a refusal, its reason cut to fit */
	assert_int_equal(mstream_send_answer(&b.s, 'N', "memory size mismatch"), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), 'N');
	assert_string_equal(reason, "memory size mis");
	/* an unknown code, another section type */
	assert_int_equal(mstream_send_answer(&b.s, 'Z', NULL), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), -EPROTO);
	assert_int_equal(mstream_send(&b.s, MS_CONFIG, "x", 1), 0);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), -EPROTO);
	/* the peer hangs up */
	mstream_close(&b.s);
	assert_int_equal(mstream_recv_answer(&a.s, 1000, reason, sizeof(reason)), -ECONNRESET);
	mstream_close(&a.s);
}

/* A RAM payload: records at page offsets offs[], pages filled with fill[i]
 * (0: a zero record). Returns its length. */
static size_t ram_payload(uint8_t *buf, const uint64_t *offs, const int *fill, int n,
                          uint32_t *pages)
{
	size_t used = 0;
	*pages = 0;
	for (int i = 0; i < n; i++) {
		uint64_t rec = offs[i] | (fill[i] ? 0 : MS_REC_ZERO);
		memcpy(buf + used, &rec, 8);
		used += 8;
		if (fill[i]) {
			memset(buf + used, fill[i], MS_PAGE);
			used += MS_PAGE;
			(*pages)++;
		}
	}
	return used;
}

static void test_ram_apply(void **state)
{
	uint8_t *mem = calloc(1, 16 * MS_PAGE), *buf = malloc(8 * (8 + MS_PAGE));
	uint32_t recs, pages, want_pages;
	uint64_t rec;

	(void)state;
	memset(mem + 3 * MS_PAGE, 0x77, MS_PAGE);
	uint64_t offs[] = { 0, 3 * MS_PAGE, 15 * MS_PAGE };
	int fill[] = { 0x11, 0, 0x22 };
	size_t len = ram_payload(buf, offs, fill, 3, &want_pages);
	assert_int_equal(mstream_ram_apply(buf, len, mem, 16 * MS_PAGE, &recs, &pages), 0);
	assert_int_equal(recs, 3);
	assert_int_equal(pages, want_pages);
	assert_int_equal(mem[0], 0x11);
	assert_int_equal(mem[3 * MS_PAGE + 5], 0); /* zeroed */
	assert_int_equal(mem[16 * MS_PAGE - 1], 0x22);
	/* trailing bytes, a cut page, a cut record */
	assert_int_equal(mstream_ram_apply(buf, len + 3, mem, 16 * MS_PAGE, NULL, NULL), -EPROTO);
	assert_int_equal(mstream_ram_apply(buf, len - 1, mem, 16 * MS_PAGE, NULL, NULL), -EPROTO);
	assert_int_equal(mstream_ram_apply(buf, 8 + 100, mem, 16 * MS_PAGE, NULL, NULL), -EPROTO);
	assert_int_equal(mstream_ram_apply(buf, 5, mem, 16 * MS_PAGE, NULL, NULL), -EPROTO);
	/* out of range: at the end, far away, wrapping; unknown flags */
	uint64_t bad[] = { 16 * MS_PAGE | MS_REC_ZERO, (UINT64_MAX & ~(MS_PAGE - 1)) | MS_REC_ZERO,
		           MS_PAGE | 2, MS_PAGE | 0x800 | MS_REC_ZERO };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rec = bad[i];
		assert_int_equal(mstream_ram_apply((uint8_t *)&rec, 8, mem, 16 * MS_PAGE, NULL, NULL),
		                 -EPROTO);
	}
	/* a memory size that is not whole pages: the last partial page is out */
	rec = 15 * MS_PAGE | MS_REC_ZERO;
	assert_int_equal(mstream_ram_apply((uint8_t *)&rec, 8, mem, 16 * MS_PAGE - 1, NULL, NULL),
	                 -EPROTO);
	/* empty is fine */
	assert_int_equal(mstream_ram_apply(buf, 0, mem, 16 * MS_PAGE, &recs, &pages), 0);
	assert_int_equal(recs, 0);
	free(mem);
	free(buf);
}

/* Sender in a thread: a full batch may not fit in the socket's buffer. */
struct ram_job {
	struct mstream *s;
	const uint8_t *p;
	size_t len;
	uint32_t recs, pages;
	int rc;
};

static void *send_ram_thread(void *arg)
{
	struct ram_job *j = arg;
	j->rc = mstream_send_ram(j->s, j->p, j->len, j->recs, j->pages, true);
	return NULL;
}

static void test_zstd_round_trip(void **state)
{
	struct side a, b;
	uint64_t offs[MS_BATCH];
	int fill[MS_BATCH];
	uint8_t *buf = malloc(MS_RAM_MAX), *mem = calloc(1, MS_BATCH * MS_PAGE), *data;
	uint32_t recs, pages, type;
	uint64_t len;
	pthread_t t;

	(void)state;
	for (int k = 0; k < 2; k++) {
		pair_up(&a, &b, KEY_A, KEY_A);
		for (int i = 0; i < MS_BATCH; i++) {
			offs[i] = (uint64_t)i * MS_PAGE;
			fill[i] = i % 5 ? (i & 0xff) | 1 : 0;
		}
		recs = MS_BATCH;
		size_t n = ram_payload(buf, offs, fill, MS_BATCH, &pages);
		for (size_t i = 0, p = 0; k == 1 && p < MS_BATCH; p++) {
			/* random data does not compress: sent as it is */
			i += 8;
			if (fill[p]) {
				assert_int_equal(getrandom(buf + i, MS_PAGE, 0), MS_PAGE);
				i += MS_PAGE;
			}
		}
		struct ram_job j = { &a.s, buf, n, recs, pages, -1 };
		assert_int_equal(pthread_create(&t, NULL, send_ram_thread, &j), 0);
		assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
		pthread_join(t, NULL);
		assert_int_equal(j.rc, 0);
		memset(mem, 0xee, MS_BATCH * MS_PAGE);
		if (k == 0) {
			assert_int_equal(type, MS_RAM_ZSTD);
			assert_true(len < n / 10);
			assert_int_equal(mstream_ram_zstd_apply(&b.s, data, len, mem, MS_BATCH * MS_PAGE), 0);
		} else {
			assert_int_equal(type, MS_RAM);
			assert_int_equal(mstream_ram_apply(data, len, mem, MS_BATCH * MS_PAGE, NULL, NULL), 0);
		}
		free(data);
		/* what landed is what was sent */
		size_t i = 0;
		for (int p = 0; p < MS_BATCH; p++) {
			i += 8;
			if (fill[p]) {
				assert_memory_equal(mem + p * MS_PAGE, buf + i, MS_PAGE);
				i += MS_PAGE;
			} else {
				assert_int_equal(mem[p * MS_PAGE], 0);
			}
		}
		close_pair(&a, &b);
	}
	/* only zero records: nothing to compress */
	pair_up(&a, &b, NULL, NULL);
	uint64_t z = 0 | MS_REC_ZERO;
	assert_int_equal(mstream_send_ram(&a.s, &z, 8, 1, 0, true), 0);
	assert_int_equal(mstream_recv(&b.s, &type, &data, &len), 0);
	assert_int_equal(type, MS_RAM);
	free(data);
	assert_int_equal(mstream_send_ram(&a.s, buf, MS_RAM_MAX + 1, 1, 0, true), -EMSGSIZE);
	close_pair(&a, &b);
	free(buf);
	free(mem);
}

/* A RAM_ZSTD payload: header counts, then src compressed. */
static size_t zstd_payload(uint8_t *out, size_t cap, uint32_t recs, uint32_t pages,
                           const void *src, size_t n)
{
	memcpy(out, &recs, 4);
	memcpy(out + 4, &pages, 4);
	size_t z = ZSTD_compress(out + 8, cap - 8, src, n, 1);
	assert_false(ZSTD_isError(z));
	return z + 8;
}

static void test_zstd_bounds(void **state)
{
	struct mstream s;
	size_t cap = 2 * MS_RAM_MAX;
	uint8_t *raw = calloc(1, cap), *z = malloc(cap), *mem = calloc(1, 64 * MS_PAGE);
	uint32_t pages;
	uint64_t offs[2] = { 0, MS_PAGE };
	int fill[2] = { 0x5a, 0 };
	size_t n, zn;

	(void)state;
	mstream_init(&s, -1, MS_DEST);
	n = ram_payload(raw, offs, fill, 2, &pages);
	zn = zstd_payload(z, cap, 2, 1, raw, n);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), 0);
	assert_int_equal(mem[0], 0x5a);
	/* counts that do not match what decompresses */
	zn = zstd_payload(z, cap, 2, 2, raw, n);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	zn = zstd_payload(z, cap, 3, 1, raw, n);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	/* one byte short of what the counts say */
	zn = zstd_payload(z, cap, 2, 1, raw, n - 1);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	/* impossible counts */
	zn = zstd_payload(z, cap, 0, 0, raw, 0);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	zn = zstd_payload(z, cap, MS_BATCH + 1, 0, raw, (MS_BATCH + 1) * 8);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	zn = zstd_payload(z, cap, 1, 2, raw, n);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	/* a frame that would inflate far beyond the counts: stops at the bound */
	zn = zstd_payload(z, cap, 1, 1, raw, cap);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	/* not zstd, truncated, too short for the header */
	zn = zstd_payload(z, cap, 2, 1, raw, n);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn - 3, mem, 64 * MS_PAGE), -EPROTO);
	memset(z + 8, 0x42, 32);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, 40, mem, 64 * MS_PAGE), -EPROTO);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, 7, mem, 64 * MS_PAGE), -EPROTO);
	/* right sizes, records out of range */
	uint64_t far = 64 * MS_PAGE | MS_REC_ZERO;
	zn = zstd_payload(z, cap, 1, 0, &far, 8);
	assert_int_equal(mstream_ram_zstd_apply(&s, z, zn, mem, 64 * MS_PAGE), -EPROTO);
	mstream_close(&s);
	free(raw);
	free(z);
	free(mem);
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_key_files(void **state)
{
	char dir[] = "/tmp/cvisor-mkey-XXXXXX", path[64], err[256];
	uint8_t key[MS_KEY_MAX], big[MS_KEY_MAX + 1];
	size_t len;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	write_file(path, "0123456789abcdef\n", 17, 0600);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 16); /* the newline is not part of it */
	assert_memory_equal(key, "0123456789abcdef", 16);
	write_file(path, "0123456789abcdef\r\n", 18, 0400);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 16);
	/* too short, too long, open to others */
	write_file(path, "short\n", 6, 0600);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "16 to 1024 bytes"));
	memset(big, 'k', sizeof(big));
	write_file(path, big, sizeof(big), 0600);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), -EINVAL);
	write_file(path, big, 32, 0644);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "chmod 600"));
	/* missing, a directory */
	unlink(path);
	assert_int_equal(mstream_key_load(path, key, &len, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(mstream_key_load(dir, key, &len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_round_trip),
		cmocka_unit_test(test_keyed_round_trip),
		cmocka_unit_test(test_fresh_session_keys),
		cmocka_unit_test(test_key_on_one_side),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_bad_hellos),
		cmocka_unit_test(test_tamper_every_byte),
		cmocka_unit_test(test_reorder_drop_replay),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_ram_apply),
		cmocka_unit_test(test_zstd_round_trip),
		cmocka_unit_test(test_zstd_bounds),
		cmocka_unit_test(test_key_files),
	};

	return cmocka_run_group_tests_name("migrate_stream", tests, NULL, NULL);
}
