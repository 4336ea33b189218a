/* Unit tests for post-copy bookkeeping (vm/postcopy.c): the owed-page bitmap,
 * PC_OWED and PC_REQ payloads and their bounds, the RAM record walk, and the
 * new section types over a real stream (limits, the expect mask). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vm/migrate_stream.h"
#include "vm/postcopy.h"

static void test_map(void **state)
{
	struct pc_map m;

	(void)state;
	assert_int_equal(pc_map_init(&m, 130), 0);
	assert_int_equal(m.count, 0);
	assert_int_equal(pc_map_next(&m, 0), 130);
	assert_true(pc_map_set(&m, 0));
	assert_true(pc_map_set(&m, 63));
	assert_true(pc_map_set(&m, 64));
	assert_true(pc_map_set(&m, 129));
	assert_false(pc_map_set(&m, 129)); /* already set: the count does not move */
	assert_false(pc_map_set(&m, 130)); /* past the end */
	assert_int_equal(m.count, 4);
	assert_int_equal(pc_map_next(&m, 0), 0);
	assert_int_equal(pc_map_next(&m, 1), 63);
	assert_int_equal(pc_map_next(&m, 64), 64);
	assert_int_equal(pc_map_next(&m, 65), 129);
	assert_int_equal(pc_map_next(&m, 130), 130);
	assert_int_equal(pc_map_next(&m, UINT64_MAX), 130);
	assert_true(pc_map_clear(&m, 63));
	assert_false(pc_map_clear(&m, 63)); /* twice: served once (EEXIST path) */
	assert_false(pc_map_clear(&m, 500));
	assert_int_equal(m.count, 3);
	assert_int_equal(pc_map_next(&m, 1), 64);
	assert_false(pc_map_test(&m, 63));
	assert_true(pc_map_test(&m, 64));
	assert_false(pc_map_test(&m, 1000));
	/* draining in order empties it */
	for (uint64_t p = pc_map_next(&m, 0); p < m.npages; p = pc_map_next(&m, p))
		assert_true(pc_map_clear(&m, p));
	assert_int_equal(m.count, 0);
	pc_map_free(&m);
	assert_int_equal(pc_map_init(&m, PC_MAX_PAGES + 1), -EINVAL);
}

static void test_owed_round_trip(void **state)
{
	struct pc_map m, back;
	uint8_t *p;
	uint64_t len;

	(void)state;
	assert_int_equal(pc_map_init(&m, 100), 0);
	pc_map_set(&m, 3);
	pc_map_set(&m, 64);
	pc_map_set(&m, 99);
	assert_int_equal(pc_owed_encode(&m, &p, &len), 0);
	assert_int_equal(len, 8 + 2 * 8);
	assert_int_equal(pc_owed_decode(p, len, 100, &back), 0);
	assert_int_equal(back.count, 3);
	assert_true(pc_map_test(&back, 3) && pc_map_test(&back, 64) && pc_map_test(&back, 99));
	pc_map_free(&back);
	/* another guest size, a short or long payload */
	assert_int_equal(pc_owed_decode(p, len, 101, &back), -EPROTO);
	assert_int_equal(pc_owed_decode(p, len - 1, 100, &back), -EPROTO);
	assert_int_equal(pc_owed_decode(p, 7, 100, &back), -EPROTO);
	uint8_t *big = calloc(1, len + 8);
	memcpy(big, p, len);
	assert_int_equal(pc_owed_decode(big, len + 8, 100, &back), -EPROTO);
	/* a bit past the last page */
	p[8 + 8 + 5] |= 0x80; /* page 64 + 47 = 111 */
	assert_int_equal(pc_owed_decode(p, len, 100, &back), -EPROTO);
	assert_null(back.bits);
	free(big);
	free(p);
	pc_map_free(&m);
}

static void test_req(void **state)
{
	uint8_t buf[PC_REQ_LEN_MAX + 8];
	uint64_t offs[PC_REQ_MAX], out[PC_REQ_MAX];
	uint32_t n = 0;
	const uint64_t size = 64 * MS_PAGE;

	(void)state;
	offs[0] = 0;
	offs[1] = 63 * MS_PAGE;
	offs[2] = 5 * MS_PAGE;
	size_t len = pc_req_encode(offs, 3, buf);
	assert_int_equal(len, 4 + 3 * 8);
	assert_int_equal(pc_req_decode(buf, len, size, out, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(out, offs, 3 * 8);
	/* length must be exact */
	assert_int_equal(pc_req_decode(buf, len - 1, size, out, &n), -EPROTO);
	assert_int_equal(pc_req_decode(buf, len + 1, size, out, &n), -EPROTO);
	assert_int_equal(pc_req_decode(buf, 3, size, out, &n), -EPROTO);
	/* an offset outside the guest, or not page-aligned */
	offs[1] = size;
	len = pc_req_encode(offs, 3, buf);
	assert_int_equal(pc_req_decode(buf, len, size, out, &n), -EPROTO);
	offs[1] = MS_PAGE + 8;
	len = pc_req_encode(offs, 3, buf);
	assert_int_equal(pc_req_decode(buf, len, size, out, &n), -EPROTO);
	/* no offsets, too many */
	uint32_t c = 0;
	memcpy(buf, &c, 4);
	assert_int_equal(pc_req_decode(buf, 4, size, out, &n), -EPROTO);
	c = PC_REQ_MAX + 1;
	memcpy(buf, &c, 4);
	assert_int_equal(pc_req_decode(buf, 4 + (uint64_t)c * 8, size, out, &n), -EPROTO);
	/* the largest one */
	for (uint32_t i = 0; i < PC_REQ_MAX; i++)
		offs[i] = (i % 64) * MS_PAGE;
	len = pc_req_encode(offs, PC_REQ_MAX, buf);
	assert_int_equal(len, PC_REQ_LEN_MAX);
	assert_int_equal(pc_req_decode(buf, len, size, out, &n), 0);
	assert_int_equal(n, PC_REQ_MAX);
}

struct seen {
	int n;
	uint64_t off[4];
	bool zero[4];
	uint8_t first[4];
	int stop_at; /* return -EEXIST-like error at this record (or -1) */
};

static int note(void *opaque, uint64_t off, const uint8_t *page)
{
	struct seen *s = opaque;
	if (s->n == s->stop_at)
		return -EIO;
	s->off[s->n] = off;
	s->zero[s->n] = page == NULL;
	s->first[s->n] = page ? page[0] : 0;
	s->n++;
	return 0;
}

static void test_ram_walk(void **state)
{
	static uint8_t p[3 * 8 + 2 * MS_PAGE];
	const uint64_t size = 16 * MS_PAGE;
	uint64_t rec;
	struct seen s = { .stop_at = -1 };

	(void)state;
	rec = 2 * MS_PAGE;
	memcpy(p, &rec, 8);
	memset(p + 8, 0xaa, MS_PAGE);
	rec = 3 * MS_PAGE | MS_REC_ZERO;
	memcpy(p + 8 + MS_PAGE, &rec, 8);
	rec = 15 * MS_PAGE;
	memcpy(p + 16 + MS_PAGE, &rec, 8);
	memset(p + 24 + MS_PAGE, 0xbb, MS_PAGE);
	assert_int_equal(pc_ram_walk(p, sizeof(p), size, note, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.off[0], 2 * MS_PAGE);
	assert_false(s.zero[0]);
	assert_int_equal(s.first[0], 0xaa);
	assert_true(s.zero[1]);
	assert_int_equal(s.off[2], 15 * MS_PAGE);
	assert_int_equal(s.first[2], 0xbb);
	/* a callback error stops the walk */
	memset(&s, 0, sizeof(s));
	s.stop_at = 1;
	assert_int_equal(pc_ram_walk(p, sizeof(p), size, note, &s), -EIO);
	assert_int_equal(s.n, 1);
	/* a truncated last page: nothing is applied at all */
	memset(&s, 0, sizeof(s));
	s.stop_at = -1;
	assert_int_equal(pc_ram_walk(p, sizeof(p) - 1, size, note, &s), -EPROTO);
	assert_int_equal(s.n, 0);
	/* out of range, unknown flag */
	assert_int_equal(pc_ram_walk(p, sizeof(p), 15 * MS_PAGE, note, &s), -EPROTO);
	assert_int_equal(s.n, 0);
	rec = 3 * MS_PAGE | 2;
	memcpy(p + 8 + MS_PAGE, &rec, 8);
	assert_int_equal(pc_ram_walk(p, sizeof(p), size, note, &s), -EPROTO);
	assert_int_equal(s.n, 0);
}

/* The new sections over a stream: their limits, and the expect mask refuses
 * them where they are not due (before anything is allocated). */
static void test_sections(void **state)
{
	int sv[2];
	struct mstream a, b;
	uint8_t *data, req[PC_REQ_LEN_MAX];
	uint64_t len, off = 4 * MS_PAGE;
	uint32_t type;

	(void)state;
	assert_int_equal(mstream_max_len(MS_PC_ADVISE), 0);
	assert_int_equal(mstream_max_len(MS_PC_END), 0);
	assert_int_equal(mstream_max_len(MS_PC_REQ), PC_REQ_LEN_MAX);
	assert_int_equal(mstream_max_len(MS_PC_OWED), PC_OWED_LEN_MAX);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mstream_init(&a, sv[0], MS_DEST);
	mstream_init(&b, sv[1], MS_SOURCE);
	size_t n = pc_req_encode(&off, 1, req);
	assert_int_equal(mstream_send(&a, MS_PC_REQ, req, n), 0);
	b.expect = 1u << MS_PC_REQ | 1u << MS_ANSWER;
	assert_int_equal(mstream_recv(&b, &type, &data, &len), 0);
	assert_int_equal(type, MS_PC_REQ);
	assert_int_equal(len, n);
	free(data);
	/* a PC_END where only requests and answers are due */
	assert_int_equal(mstream_send(&a, MS_PC_END, "", 0), 0);
	assert_int_equal(mstream_recv(&b, &type, &data, &len), -EPROTO);
	assert_null(data);
	mstream_close(&a);
	mstream_close(&b);
	/* a PC_REQ header announcing more than its limit */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	mstream_init(&b, sv[1], MS_SOURCE);
	uint8_t hdr[12];
	type = MS_PC_REQ;
	len = PC_REQ_LEN_MAX + 1;
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &len, 8);
	assert_int_equal(write(sv[0], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	assert_int_equal(mstream_recv(&b, &type, &data, &len), -EMSGSIZE);
	close(sv[0]);
	mstream_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_owed_round_trip),
		cmocka_unit_test(test_req),
		cmocka_unit_test(test_ram_walk),
		cmocka_unit_test(test_sections),
	};

	return cmocka_run_group_tests_name("postcopy", tests, NULL, NULL);
}
