/* libFuzzer target for the per-VM API (src/api). The first byte picks a mode:
 *  0: api_handle() directly: the rest is "METHOD\nPATH\nBODY";
 *  1: the raw bytes into a live server connection (libmicrohttpd, our body
 *     collection and limits, routing, the backend), the client half-closed;
 *  2: the client's answer parser, api_client_parse().
 * The backend is a fake that always succeeds and checks what it is given.
 * Oracles: every answer is a known status with a JSON body (an "error" string
 * on one line for 4xx/5xx), metrics excepted; a 405 names the allowed methods;
 * a rejected request never reaches the backend and an accepted one reaches it
 * once; arguments the backend sees are within the documented ranges; the
 * server's bytes parse as an HTTP answer. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/api.h"
#include "api/client.h"
#include "api/route.h"
#include "state/sbuf.h"
#include "vm/evloop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int calls;

static void check_id(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > API_ID_MAX ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		__builtin_trap();
}

static void check_limits(const struct api_limits *l)
{
	if (l->bps == API_KEEP && l->ops == API_KEEP)
		__builtin_trap();
	if ((l->bps != API_KEEP && l->bps > API_INT_MAX) || (l->ops != API_KEEP && l->ops > API_INT_MAX))
		__builtin_trap();
}

static void check_str(const char *s)
{
	if (!s[0] || strlen(s) > API_PATH_MAX)
		__builtin_trap();
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			__builtin_trap();
}

static int f_info(void *o, struct json_object *out, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	calls++;
	json_object_object_add(out, "state", json_object_new_string("running"));
	return 0;
}

static int f_plain(void *o, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	calls++;
	return 0;
}

static int f_balloon(void *o, uint64_t mib, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	calls++;
	if (mib > API_INT_MAX)
		__builtin_trap();
	return 0;
}

static int f_limit(void *o, const char *id, const struct api_limits *l, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	calls++;
	check_id(id);
	check_limits(l);
	return 0;
}

static int f_metrics(void *o, struct sbuf *text)
{
	(void)o;
	calls++;
	api_prom_family(text, "cvisor_vm_paused", "gauge", "1 while paused");
	api_prom_sample(text, "cvisor_vm_paused", NULL, 0);
	return 0;
}

static int f_snapshot(void *o, const char *path, bool disk_overlay, char *err, size_t errlen)
{
	(void)o;
	(void)disk_overlay;
	(void)err;
	(void)errlen;
	calls++;
	check_str(path);
	if (path[0] != '/')
		__builtin_trap();
	return 0;
}

static int f_migrate(void *o, const struct api_migrate *m, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	calls++;
	check_str(m->to);
	if (strncmp(m->to, "tcp:", 4))
		__builtin_trap();
	if (m->key_file && (check_str(m->key_file), m->key_file[0] != '/'))
		__builtin_trap();
	if (m->compress && strcmp(m->compress, "zstd") && strcmp(m->compress, "none"))
		__builtin_trap();
	return 0;
}

static const struct api_backend fake = {
	.info = f_info,
	.pause = f_plain,
	.resume = f_plain,
	.shutdown = f_plain,
	.stop = f_plain,
	.balloon = f_balloon,
	.disk_limit = f_limit,
	.net_limit = f_limit,
	.metrics = f_metrics,
	.snapshot = f_snapshot,
	.migrate = f_migrate,
	.migrate_cancel = f_plain,
};

static void check_reply(const struct api_reply *r, int calls_before)
{
	if (!r->body || r->body[r->len] != '\0')
		__builtin_trap();
	switch (r->status) {
	case 200:
	case 202:
	case 400:
	case 404:
	case 405:
		break;
	default:
		__builtin_trap(); /* the fake never fails */
	}
	if (r->status == 405 && !r->allow[0])
		__builtin_trap();
	if (r->status >= 400 && calls != calls_before)
		__builtin_trap(); /* rejected, yet the VM saw it */
	if (r->status < 300 && calls != calls_before + 1)
		__builtin_trap();
	if (!strcmp(r->content_type, "application/json")) {
		struct json_object *o = json_tokener_parse(r->body), *e;
		if (!o || !json_object_is_type(o, json_type_object))
			__builtin_trap();
		if (r->status >= 400) {
			if (!json_object_object_get_ex(o, "error", &e) ||
			    !json_object_is_type(e, json_type_string) ||
			    strchr(json_object_get_string(e), '\n'))
				__builtin_trap();
		}
		json_object_put(o);
	} else if (r->status != 200 || strncmp(r->body, "# HELP ", 7)) {
		__builtin_trap();
	}
}

static void fuzz_handle(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *method = buf, *path = memchr(buf, '\n', size), *body = NULL;
	if (path) {
		*path++ = '\0';
		body = memchr(path, '\n', size - (size_t)(path - buf));
		if (body)
			*body++ = '\0';
	} else {
		path = "/v1/vm";
	}
	/* NULs inside method or path end them early: the server's URL is a C string */
	size_t blen = body ? size - (size_t)(body - buf) : 0;
	struct api_reply r;
	int before = calls;
	api_handle(&fake, NULL, method, path, body, blen, &r);
	check_reply(&r, before);
	api_reply_free(&r);
	free(buf);
}

static struct evloop *loop;
static struct api_server *srv;
static char srv_dir[] = "/tmp/fuzz-api-XXXXXX";

static void server_cleanup(void)
{
	api_server_stop(srv); /* removes the socket file */
	evloop_destroy(loop);
	rmdir(srv_dir);
}

static void fuzz_server(const uint8_t *data, size_t size)
{
	char out[1 << 16];
	size_t len = 0;
	int sv[2];

	if (!srv) {
		char path[64], err[256];
		if (!mkdtemp(srv_dir))
			abort();
		snprintf(path, sizeof(path), "%s/api.sock", srv_dir);
		loop = evloop_create();
		if (!loop || api_server_start(loop, path, &fake, &srv, err, sizeof(err)) < 0)
			abort();
		atexit(server_cleanup);
		/* the listening socket is not used: connections are handed over */
	}
	if (size > 65536) /* fits the socket buffer: no writer thread needed */
		return;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (size && send(sv[0], data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort();
	if (api_server_add_connection(srv, sv[1]) < 0)
		abort();
	/* half-close only once the server has read: its epoll set is edge-triggered
	 * and a FIN that came with the data would raise no second edge (a real
	 * client like that waits for the idle timeout) */
	evloop_run_once(loop, 0);
	shutdown(sv[0], SHUT_WR);
	for (int i = 0; i < 100; i++) {
		ssize_t n = recv(sv[0], out + len, sizeof(out) - 1 - len, MSG_DONTWAIT);
		if (n > 0) {
			len += (size_t)n;
			if (len == sizeof(out) - 1)
				break;
			continue;
		}
		if (n == 0 || errno != EAGAIN)
			break; /* the server closed its end */
		evloop_run_once(loop, i < 4 ? 0 : 1);
	}
	close(sv[0]);
	evloop_run_once(loop, 0);
	if (len) {
		struct api_response resp;
		if (api_client_parse(out, len, &resp) == -EPROTO)
			__builtin_trap(); /* the server wrote something that is not HTTP */
		api_response_free(&resp);
	}
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
	struct api_response r;
	int rc = api_client_parse((const char *)data, size, &r);

	if (rc != 0 && rc != -EPROTO && rc != -EAGAIN && rc != -ENOMEM)
		__builtin_trap();
	if (rc == 0) {
		if (r.status < 200 || r.status > 999 || !r.body || r.len > size || r.body[r.len])
			__builtin_trap();
	} else if (r.body) {
		__builtin_trap();
	}
	api_response_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 128 * 1024)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_handle(data + 1, size - 1);
		break;
	case 1:
		fuzz_server(data + 1, size - 1);
		break;
	default:
		fuzz_parse(data + 1, size - 1);
		break;
	}
	return 0;
}
