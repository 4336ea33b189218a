/* Unit tests for cvisord's HTTP server (daemon/http.c): a real server on a
 * Unix socket in a temporary directory, driven by its event loop in this one
 * thread; each request is sent whole (then the write side is shut) and the
 * loop runs until the answer is complete. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/http.h"
#include "vm/evloop.h"

struct fixture {
	char dir[64];
	char path[128];
	struct evloop *loop;
	struct dhttp *h;
	int calls;
	char method[16], path_seen[256], query[64], body[256];
	int upgraded_fd;
	char extra[64];
};

/* The handler: echoes what it saw, upgrades /up, answers /err with a 409. */
static void handler(void *opaque, struct dhttp_conn *c, const struct dhttp_req *r)
{
	struct fixture *f = opaque;

	f->calls++;
	snprintf(f->method, sizeof(f->method), "%s", r->method);
	snprintf(f->path_seen, sizeof(f->path_seen), "%s", r->path);
	snprintf(f->query, sizeof(f->query), "%s", r->query);
	snprintf(f->body, sizeof(f->body), "%s", r->body);
	if (!strcmp(r->path, "/up") && r->upgrade) {
		char *extra;
		size_t n;
		assert_int_equal(dhttp_upgrade(c, "test-stream", &f->upgraded_fd, &extra, &n), 0);
		snprintf(f->extra, sizeof(f->extra), "%.*s", (int)n, extra ? extra : "");
		free(extra);
		return;
	}
	if (!strcmp(r->path, "/err")) {
		dhttp_reply_error(c, 409, "busy %d", 7);
		return;
	}
	dhttp_reply(c, 200, "text/plain", r->body, r->len);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	strcpy(f->dir, "/tmp/cvisord-http-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/d.sock", f->dir);
	f->loop = evloop_create();
	assert_non_null(f->loop);
	f->upgraded_fd = -1;
	assert_int_equal(dhttp_start(f->loop, f->path, handler, f, &f->h, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dhttp_stop(f->h);
	evloop_destroy(f->loop);
	if (f->upgraded_fd >= 0)
		close(f->upgraded_fd);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int client(struct fixture *f)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(a.sun_path, f->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Send req (len bytes), optionally shut the write side, and collect the
 * answer until the server closes; returns its length in out. */
static size_t exchange(struct fixture *f, const char *req, size_t len, bool shut, char *out,
                       size_t outlen)
{
	int fd = client(f);
	size_t got = 0;

	assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
	if (shut)
		shutdown(fd, SHUT_WR);
	for (int i = 0; i < 200; i++) {
		evloop_run_once(f->loop, 10);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		while (poll(&p, 1, 0) > 0) {
			ssize_t n = recv(fd, out + got, outlen - 1 - got, 0);
			if (n <= 0) {
				close(fd);
				out[got] = '\0';
				return got;
			}
			got += (size_t)n;
		}
	}
	close(fd);
	out[got] = '\0';
	return got;
}

static size_t ask(struct fixture *f, const char *req, char *out, size_t outlen)
{
	return exchange(f, req, strlen(req), true, out, outlen);
}

static void test_get_and_post(void **state)
{
	struct fixture *f = *state;
	char out[4096];

	ask(f, "GET /v1/vms?limit=3 HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_string_equal(f->method, "GET");
	assert_string_equal(f->path_seen, "/v1/vms");
	assert_string_equal(f->query, "limit=3");
	ask(f, "POST /v1/vms HTTP/1.1\r\ncontent-length: 11\r\n\r\n{\"a\": \"b\"}\n", out,
	    sizeof(out));
	assert_non_null(strstr(out, "Content-Length: 11\r\n"));
	assert_non_null(strstr(out, "\r\n\r\n{\"a\": \"b\"}\n"));
	assert_string_equal(f->body, "{\"a\": \"b\"}\n");
	ask(f, "PUT /err HTTP/1.0\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, "HTTP/1.1 409 Conflict\r\n"));
	assert_non_null(strstr(out, "{\"error\":\"busy 7\"}"));
	assert_int_equal(f->calls, 3);
}

/* The body arrives in pieces, without a half-close. */
static void test_body_in_pieces(void **state)
{
	struct fixture *f = *state;
	char out[1024];
	int fd = client(f);
	const char *parts[] = { "POST /x HTTP/1.1\r\nContent-", "Length: 6\r\n\r\nab", "cd",
		                "ef" };
	size_t got = 0;

	for (int i = 0; i < 4; i++) {
		assert_int_equal(send(fd, parts[i], strlen(parts[i]), 0), (ssize_t)strlen(parts[i]));
		for (int k = 0; k < 3; k++)
			evloop_run_once(f->loop, 5);
		if (i < 3)
			assert_int_equal(f->calls, 0);
	}
	for (int i = 0; i < 50; i++) {
		evloop_run_once(f->loop, 5);
		ssize_t n = recv(fd, out + got, sizeof(out) - 1 - got, MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
	assert_int_equal(f->calls, 1);
	assert_string_equal(f->body, "abcdef");
	assert_non_null(strstr(out, "\r\n\r\nabcdef"));
}

static void test_bad_requests(void **state)
{
	static const struct {
		const char *req;
		const char *status;
	} cases[] = {
		{ "GARBAGE\r\n\r\n", "400" },
		{ "get / HTTP/1.1\r\n\r\n", "400" },
		{ "GET / HTTP/2.0\r\n\r\n", "505" },
		{ "GET x HTTP/1.1\r\n\r\n", "400" },
		{ "GET /a\x01 HTTP/1.1\r\n\r\n", "400" },
		{ "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", "400" },
		{ "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "400" },
		{ "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "400" },
		{ "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400" },
		{ "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "400" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501" },
		{ "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", "413" },
		{ "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", "400" },
	};
	struct fixture *f = *state;
	char out[4096], want[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ask(f, cases[i].req, out, sizeof(out));
		snprintf(want, sizeof(want), "HTTP/1.1 %s ", cases[i].status);
		if (strncmp(out, want, strlen(want)))
			fail_msg("case %zu: got '%.60s', want %s", i, out, cases[i].status);
		assert_non_null(strstr(out, "{\"error\":"));
	}
	/* a head over the limit */
	char *big = malloc(DHTTP_HEAD_MAX + 64);
	int n = snprintf(big, DHTTP_HEAD_MAX + 64, "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'a', DHTTP_HEAD_MAX);
	strcpy(big + n + DHTTP_HEAD_MAX - 10, "\r\n\r\n");
	ask(f, big, out, sizeof(out));
	assert_true(!strncmp(out, "HTTP/1.1 431 ", 13));
	free(big);
	/* a NUL in the head */
	exchange(f, "GET /\0 HTTP/1.1\r\n\r\n", 20, true, out, sizeof(out));
	assert_true(!strncmp(out, "HTTP/1.1 400 ", 13));
	assert_int_equal(f->calls, 0); /* none reached the handler */
	/* an incomplete head then the end: closed without an answer */
	assert_int_equal(ask(f, "GET / HTTP/1.1\r\n", out, sizeof(out)), 0);
	/* the server lives on */
	ask(f, "GET /ok HTTP/1.1\r\n\r\n", out, sizeof(out));
	assert_true(!strncmp(out, "HTTP/1.1 200 ", 13));
}

static void test_upgrade(void **state)
{
	struct fixture *f = *state;
	const char req[] = "GET /up HTTP/1.1\r\nUpgrade: test-stream\r\n\r\nearly input";
	char out[256];
	int fd = client(f);
	size_t got = 0;

	assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
	for (int i = 0; i < 50 && f->upgraded_fd < 0; i++)
		evloop_run_once(f->loop, 5);
	assert_true(f->upgraded_fd >= 0);
	assert_string_equal(f->extra, "early input");
	for (int i = 0; i < 50 && !strstr(out, "\r\n\r\n"); i++) {
		ssize_t n = recv(fd, out + got, sizeof(out) - 1 - got, MSG_DONTWAIT);
		if (n > 0)
			got += (size_t)n;
		out[got] = '\0';
	}
	assert_non_null(strstr(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test-stream\r\n"));
	/* the stream is the handler's now: bytes go both ways */
	assert_int_equal(send(f->upgraded_fd, "hi", 2, 0), 2);
	assert_int_equal(recv(fd, out, 2, 0), 2);
	assert_memory_equal(out, "hi", 2);
	close(fd);
}

static void test_stale_socket_replaced_other_file_kept(void **state)
{
	struct fixture *f = *state;
	struct dhttp *h2;
	char err[256], other[160];

	/* a second server on a path that holds a regular file: refused */
	snprintf(other, sizeof(other), "%s/file", f->dir);
	FILE *fp = fopen(other, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(dhttp_start(f->loop, other, handler, f, &h2, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	unlink(other);
	/* socket permissions: owner only */
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_and_post, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_in_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_replaced_other_file_kept, setup,
		                                teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
