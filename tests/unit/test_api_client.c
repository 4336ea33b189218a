/* Unit tests for the API client's answer parser (api/client.c): status line,
 * Content-Length, chunked bodies, interim 1xx answers, answers cut short, and
 * malformed ones. The exchange itself is covered against the real server in
 * test_api.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/client.h"

static int parse(const char *s, struct api_response *r)
{
	return api_client_parse(s, strlen(s), r);
}

static void test_content_length(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n", &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 3);
	assert_string_equal(r.body, "{}\n");
	api_response_free(&r);

	/* case-insensitive names, extra spaces, bytes past the length ignored */
	assert_int_equal(parse("HTTP/1.0 404 Not Found\r\ncontent-length:   2  \r\nX: y\r\n\r\nabcdef",
	                       &r),
	                 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "ab");
	api_response_free(&r);

	/* no reason phrase */
	assert_int_equal(parse("HTTP/1.1 204\r\nContent-Length: 0\r\n\r\n", &r), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	assert_string_equal(r.body, "");
	api_response_free(&r);
}

static void test_until_close(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", &r), 0);
	assert_string_equal(r.body, "all of it");
	api_response_free(&r);
}

static void test_chunked(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	                       "4\r\n{\"a\"\r\nB;ext=1\r\n: 12345678}\r\n0\r\nTrailer: x\r\n\r\n",
	                       &r),
	                 0);
	assert_string_equal(r.body, "{\"a\": 12345678}");
	assert_int_equal(r.len, 15);
	api_response_free(&r);
	/* chunk sizes: hex, upper and lower case */
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
	                       "b\r\nhello world\r\n0\r\n\r\n",
	                       &r),
	                 0);
	assert_string_equal(r.body, "hello world");
	api_response_free(&r);
}

static void test_interim(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Content Too Large\r\n"
	                       "Content-Length: 2\r\n\r\n{}",
	                       &r),
	                 0);
	assert_int_equal(r.status, 413);
	assert_string_equal(r.body, "{}");
	api_response_free(&r);
}

static void test_incomplete(void **state)
{
	static const char *const cut[] = {
		"",
		"HTTP/1.1 200 OK",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
	};
	struct api_response r;

	(void)state;
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
		if (parse(cut[i], &r) != -EAGAIN)
			fail_msg("not incomplete: %s", cut[i]);
		assert_null(r.body);
	}
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 099 Huh\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 16777217\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
	};
	struct api_response r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &r) != -EPROTO)
			fail_msg("accepted: %s", bad[i]);
		assert_null(r.body);
	}
}

/* Bytes after a NUL are still the body (the length says so). */
static void test_binary(void **state)
{
	static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\0b";
	struct api_response r;

	(void)state;
	assert_int_equal(api_client_parse(ans, sizeof(ans) - 1, &r), 0);
	assert_int_equal(r.len, 3);
	assert_memory_equal(r.body, "a\0b", 3);
	api_response_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length), cmocka_unit_test(test_until_close),
		cmocka_unit_test(test_chunked),        cmocka_unit_test(test_interim),
		cmocka_unit_test(test_incomplete),     cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_binary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
