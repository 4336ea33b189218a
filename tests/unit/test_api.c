/* Unit tests for the per-VM API (src/api): a fake backend behind the real
 * server on a real Unix socket in a temporary directory, the event loop on its
 * own thread, clients on the test's threads. Covers every route, every error
 * class (400, 404, 405, 409, 413, 501, backend errors), big and chunked bodies,
 * many clients at once, stalled clients, keep-alive, the socket file's life,
 * detaching across a guest reset, Prometheus output, `cvisor ctl`, and the
 * --api-socket option. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "api/api.h"
#include "api/client.h"
#include "api/route.h"
#include "state/sbuf.h"
#include "vm/config.h"
#include "vm/evloop.h"

/* ---- fake VMM ---- */

struct fake {
	const char *name;
	bool paused;
	int calls; /* every backend call */
	int pauses, resumes, shutdowns, stops, balloons, disk_limits, net_limits, metrics;
	bool stop_ends_loop; /* stop asks the loop thread to end, as the VMM's loop would */
	uint64_t target_mib;
	char id[API_ID_MAX + 1];
	struct api_limits limits;
	struct vm_config cfg;
};

static int f_info(void *o, struct json_object *out, char *err, size_t errlen)
{
	struct fake *f = o;
	(void)err;
	(void)errlen;
	f->calls++;
	json_object_object_add(out, "state", json_object_new_string(f->paused ? "paused" : "running"));
	json_object_object_add(out, "name", json_object_new_string(f->name));
	json_object_object_add(out, "uptime_ms", json_object_new_int64(1234));
	json_object_object_add(out, "config", api_config_json(&f->cfg));
	struct json_object *devs = json_object_new_array(), *d = json_object_new_object();
	json_object_object_add(d, "type", json_object_new_string("disk"));
	json_object_object_add(d, "id", json_object_new_string("0"));
	json_object_array_add(devs, d);
	json_object_object_add(out, "devices", devs);
	return 0;
}

static int f_pause(void *o, char *err, size_t errlen)
{
	struct fake *f = o;
	f->calls++;
	if (f->paused) {
		snprintf(err, errlen, "the VM is already paused");
		return -EALREADY;
	}
	f->paused = true;
	f->pauses++;
	return 0;
}

static int f_resume(void *o, char *err, size_t errlen)
{
	struct fake *f = o;
	f->calls++;
	if (!f->paused) {
		snprintf(err, errlen, "the VM is not paused");
		return -EALREADY;
	}
	f->paused = false;
	f->resumes++;
	return 0;
}

static int f_shutdown(void *o, char *err, size_t errlen)
{
	struct fake *f = o;
	(void)err;
	(void)errlen;
	f->calls++;
	if (f->paused)
		return -EBUSY; /* no message: the server writes a default one */
	f->shutdowns++;
	return 0;
}

static atomic_bool *loop_stop_flag;

static int f_stop(void *o, char *err, size_t errlen)
{
	struct fake *f = o;
	(void)err;
	(void)errlen;
	f->calls++;
	f->stops++;
	if (f->stop_ends_loop)
		atomic_store(loop_stop_flag, true);
	return 0;
}

static int f_balloon(void *o, uint64_t mib, char *err, size_t errlen)
{
	struct fake *f = o;
	f->calls++;
	if (mib > 4096) {
		snprintf(err, errlen, "balloon target %llu MiB is above the guest's 4096 MiB",
		         (unsigned long long)mib);
		return -ERANGE;
	}
	f->target_mib = mib;
	f->balloons++;
	return 0;
}

static int f_disk_limit(void *o, const char *id, const struct api_limits *l, char *err,
                        size_t errlen)
{
	struct fake *f = o;
	(void)err;
	(void)errlen;
	f->calls++;
	if (strcmp(id, "0") && strcmp(id, "1"))
		return -ENOENT;
	snprintf(f->id, sizeof(f->id), "%s", id);
	f->limits = *l;
	f->disk_limits++;
	return 0;
}

static int f_net_limit(void *o, const char *id, const struct api_limits *l, char *err,
                       size_t errlen)
{
	struct fake *f = o;
	f->calls++;
	if (strcmp(id, "net.0")) {
		snprintf(err, errlen, "no network card '%s'", id);
		return -ENOENT;
	}
	snprintf(f->id, sizeof(f->id), "%s", id);
	f->limits = *l;
	f->net_limits++;
	return 0;
}

static int f_metrics(void *o, struct sbuf *text)
{
	struct fake *f = o;
	f->calls++;
	f->metrics++;
	api_prom_family(text, "cvisor_vm_exits_total", "counter", "VM exits by reason");
	const char *io[] = { "vcpu", "0", "reason", "io", NULL };
	const char *hlt[] = { "vcpu", "0", "reason", "hlt", NULL };
	api_prom_sample(text, "cvisor_vm_exits_total", io, 42);
	api_prom_sample(text, "cvisor_vm_exits_total", hlt, 7);
	api_prom_family(text, "cvisor_vcpu_seconds_total", "counter", "time in guest code");
	const char *v0[] = { "vcpu", "0", NULL };
	api_prom_sample_double(text, "cvisor_vcpu_seconds_total", v0, 1.5);
	api_prom_family(text, "cvisor_vm_paused", "gauge", "1 while paused");
	api_prom_sample(text, "cvisor_vm_paused", NULL, f->paused);
	return 0;
}

static struct api_backend fake_backend(struct fake *f)
{
	struct api_backend b = {
		.opaque = f,
		.info = f_info,
		.pause = f_pause,
		.resume = f_resume,
		.shutdown = f_shutdown,
		.stop = f_stop,
		.balloon = f_balloon,
		.disk_limit = f_disk_limit,
		.net_limit = f_net_limit,
		.metrics = f_metrics,
		/* snapshot, migrate, migrate_cancel: not yet (501) */
	};
	return b;
}

/* ---- fixture: server + loop thread ---- */

struct fx {
	char dir[64];
	char path[128];
	struct evloop *loop;
	struct api_server *srv;
	struct fake fake;
	pthread_t thread;
	atomic_bool stop;
	bool running;
};

static struct fx fx;

static void *loop_main(void *arg)
{
	struct fx *f = arg;
	while (!atomic_load(&f->stop))
		evloop_run_once(f->loop, 20);
	return NULL;
}

static void loop_start(struct fx *f)
{
	atomic_store(&f->stop, false);
	assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
	f->running = true;
}

static void loop_stop(struct fx *f)
{
	if (!f->running)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	f->running = false;
}

static int setup(void **state)
{
	char *argv[] = { "run", "--kernel", "/boot/vmlinuz", "--cpus", "2", "--memory", "1G",
		         "--disk", "path=/tmp/d.img", NULL };
	char err[256];
	struct api_backend b;

	(void)state;
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/cvisor-api-XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	snprintf(fx.path, sizeof(fx.path), "%s/api.sock", fx.dir);
	loop_stop_flag = &fx.stop;
	fx.fake.name = "fake";
	if (config_parse_run(&fx.fake.cfg, 9, argv, err, sizeof(err)) < 0)
		return -1;
	fx.loop = evloop_create();
	b = fake_backend(&fx.fake);
	if (!fx.loop || api_server_start(fx.loop, fx.path, &b, &fx.srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	loop_start(&fx);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	loop_stop(&fx);
	api_server_stop(fx.srv);
	evloop_destroy(fx.loop);
	unlink(fx.path);
	rmdir(fx.dir);
	return 0;
}

/* ---- clients ---- */

/* One request through the library client; returns the status. */
static int call(const char *method, const char *path, const char *body, struct api_response *r)
{
	char err[256];
	int rc = api_client_request(fx.path, method, path, body, 5000, r, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s %s: %s\n", method, path, err);
		return rc;
	}
	return r->status;
}

/* Status of a request, its body checked to be JSON with "error" for 4xx/5xx. */
static int call_s(const char *method, const char *path, const char *body)
{
	struct api_response r;
	int st = call(method, path, body, &r);
	if (st < 0)
		return st;
	struct json_object *o = json_tokener_parse(r.body), *e;
	assert_non_null(o);
	if (st >= 400) {
		assert_true(json_object_object_get_ex(o, "error", &e));
		assert_true(json_object_is_type(e, json_type_string));
		assert_true(strlen(json_object_get_string(e)) > 0);
		assert_null(strchr(json_object_get_string(e), '\n'));
	}
	json_object_put(o);
	api_response_free(&r);
	return st;
}

static int sock_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memcpy(sa.sun_path, fx.path, strlen(fx.path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return; /* EPIPE: the server answered and closed early */
		c += w;
		n -= (size_t)w;
	}
}

/* Read until EOF (or the timeout); returns the bytes read, buf NUL-terminated. */
static size_t recv_all(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (len + 1 < cap && poll(&p, 1, timeout_ms) > 0) {
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	return len;
}

/* Send raw bytes on a new connection, read the whole answer. */
static size_t raw(const char *req, size_t n, char *buf, size_t cap)
{
	int fd = sock_connect();
	send_all(fd, req, n);
	size_t len = recv_all(fd, buf, cap, 5000);
	close(fd);
	return len;
}

static int raw_status(const char *buf)
{
	int st = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1)
		return -1;
	return st;
}

/* ---- every route, success ---- */

static void test_routes_ok(void **state)
{
	struct api_response r;
	struct json_object *o, *v;

	(void)state;
	assert_int_equal(call("GET", "/v1/vm", NULL, &r), 200);
	o = json_tokener_parse(r.body);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "state", &v));
	assert_string_equal(json_object_get_string(v), "running");
	assert_true(json_object_object_get_ex(o, "uptime_ms", &v));
	assert_int_equal(json_object_get_int64(v), 1234);
	assert_true(json_object_object_get_ex(o, "config", &v));
	struct json_object *c;
	assert_true(json_object_object_get_ex(v, "cpus", &c));
	assert_int_equal(json_object_get_int(c), 2);
	assert_true(json_object_object_get_ex(v, "memory_bytes", &c));
	assert_int_equal(json_object_get_int64(c), 1LL << 30);
	assert_true(json_object_object_get_ex(o, "devices", &v));
	assert_int_equal(json_object_array_length(v), 1);
	json_object_put(o);
	api_response_free(&r);

	assert_int_equal(call_s("PUT", "/v1/vm/pause", NULL), 200);
	assert_true(fx.fake.paused);
	assert_int_equal(call_s("PUT", "/v1/vm/resume", "{}"), 200);
	assert_false(fx.fake.paused);
	assert_int_equal(call_s("PUT", "/v1/vm/shutdown", NULL), 202);
	assert_int_equal(fx.fake.shutdowns, 1);
	assert_int_equal(call_s("PUT", "/v1/vm/stop", " { } "), 200);
	assert_int_equal(fx.fake.stops, 1);

	assert_int_equal(call_s("PUT", "/v1/vm/balloon", "{\"target_mib\": 256}"), 200);
	assert_int_equal(fx.fake.target_mib, 256);
	assert_int_equal(call_s("PUT", "/v1/vm/balloon", "{\"target_mib\": 0}"), 200);
	assert_int_equal(fx.fake.target_mib, 0);

	assert_int_equal(call_s("PATCH", "/v1/vm/disks/1", "{\"bps\": 1048576, \"iops\": 100}"), 200);
	assert_string_equal(fx.fake.id, "1");
	assert_int_equal(fx.fake.limits.bps, 1048576);
	assert_int_equal(fx.fake.limits.ops, 100);
	assert_int_equal(call_s("PATCH", "/v1/vm/disks/0", "{\"iops\": 0}"), 200);
	assert_true(fx.fake.limits.bps == API_KEEP);
	assert_int_equal(fx.fake.limits.ops, 0);
	assert_int_equal(call_s("PATCH", "/v1/vm/nets/net.0", "{\"bps\": 125000}"), 200);
	assert_string_equal(fx.fake.id, "net.0");
	assert_int_equal(fx.fake.limits.bps, 125000);
	assert_true(fx.fake.limits.ops == API_KEEP);
	assert_int_equal(call_s("PATCH", "/v1/vm/nets/net.0", "{\"pps\": 9007199254740991}"), 200);
	assert_true(fx.fake.limits.ops == API_INT_MAX);

	assert_int_equal(call("GET", "/metrics", NULL, &r), 200);
	assert_non_null(strstr(r.body, "cvisor_vm_exits_total{vcpu=\"0\",reason=\"io\"} 42\n"));
	assert_non_null(strstr(r.body, "cvisor_api_responses_total{code=\"200\"}"));
	api_response_free(&r);
}

/* ---- error classes ---- */

struct bad {
	const char *method, *path, *body;
	int status;
	const char *msg; /* part of the "error" text */
};

static void check_bad(const struct bad *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct api_response r;
		int calls = fx.fake.calls;
		int st = call(t[i].method, t[i].path, t[i].body, &r);
		if (st != t[i].status || !strstr(r.body, t[i].msg))
			fail_msg("%s %s %s: got %d %s, want %d ...%s...", t[i].method, t[i].path,
			         t[i].body ? t[i].body : "(none)", st, st > 0 ? r.body : "",
			         t[i].status, t[i].msg);
		struct json_object *o = json_tokener_parse(r.body), *e;
		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "error", &e));
		json_object_put(o);
		api_response_free(&r);
		/* rejected before the backend: the VM never sees it */
		assert_int_equal(fx.fake.calls, calls);
	}
}

static void test_bad_requests(void **state)
{
	static const struct bad t[] = {
		/* 404 */
		{ "GET", "/", NULL, 404, "no route" },
		{ "GET", "/v1", NULL, 404, "no route" },
		{ "GET", "/v1/vm/", NULL, 404, "no route" },
		{ "GET", "/v1//vm", NULL, 404, "no route" },
		{ "PUT", "/v1/vm/pausex", NULL, 404, "no route" },
		{ "PATCH", "/v1/vm/disks", "{}", 404, "no route" },
		{ "PATCH", "/v1/vm/disks/", "{}", 404, "no route" },
		{ "PATCH", "/v1/vm/disks/0/x", "{}", 404, "no route" },
		{ "GET", "/v1/vm/%2e%2e/metrics", NULL, 404, "no route" },
		/* 405 */
		{ "POST", "/v1/vm", NULL, 405, "allowed: GET, HEAD" },
		{ "GET", "/v1/vm/pause", NULL, 405, "allowed: PUT" },
		{ "DELETE", "/v1/vm/disks/0", NULL, 405, "allowed: PATCH" },
		{ "PUT", "/metrics", NULL, 405, "allowed: GET, HEAD" },
		{ "get", "/v1/vm", NULL, 405, "allowed: GET, HEAD" },
		/* 400: JSON */
		{ "PUT", "/v1/vm/balloon", "{", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1,}", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1} x", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1}{}", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 01}", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": \"\xff\"}", 400, "malformed JSON" },
		{ "PUT", "/v1/vm/balloon", "null", 400, "JSON" },
		{ "PUT", "/v1/vm/balloon", "12", 400, "JSON" },
		{ "PUT", "/v1/vm/balloon", "[1]", 400, "must be a JSON object" },
		{ "PUT", "/v1/vm/balloon", "\"x\"", 400, "must be a JSON object" },
		{ "PUT", "/v1/vm/balloon", "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}",
		  400, "malformed JSON" },
		/* 400: fields */
		{ "PUT", "/v1/vm/balloon", NULL, 400, "missing field 'target_mib'" },
		{ "PUT", "/v1/vm/balloon", "{}", 400, "missing field 'target_mib'" },
		{ "PUT", "/v1/vm/balloon", "{\"target\": 1}", 400, "unknown field 'target'" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1, \"x\": 2}", 400, "unknown field 'x'" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": \"1\"}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1.0}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 1e3}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": true}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": null}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": [1]}", 400, "must be an integer" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": -1}", 400, "must not be negative" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": -99999999999999999999}", 400,
		  "must not be negative" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 9007199254740992}", 400, "at most" },
		{ "PUT", "/v1/vm/balloon", "{\"target_mib\": 18446744073709551616}", 400, "at most" },
		{ "PUT", "/v1/vm/pause", "{\"now\": true}", 400, "takes no fields" },
		{ "PUT", "/v1/vm/pause", "[]", 400, "must be a JSON object" },
		{ "GET", "/v1/vm", "{\"x\": 1}", 400, "unknown field" },
		{ "PATCH", "/v1/vm/disks/0", "{}", 400, "nothing to change" },
		{ "PATCH", "/v1/vm/disks/0", NULL, 400, "nothing to change" },
		{ "PATCH", "/v1/vm/disks/0", "{\"pps\": 1}", 400, "unknown field 'pps'" },
		{ "PATCH", "/v1/vm/nets/net.0", "{\"iops\": 1}", 400, "unknown field 'iops'" },
		{ "PATCH", "/v1/vm/nets/net.0", "{\"bps\": -5}", 400, "must not be negative" },
		{ "PATCH", "/v1/vm/disks/a%20b", "{\"bps\": 1}", 400, "device id" },
		{ "PATCH", "/v1/vm/disks/a%2Fb", "{\"bps\": 1}", 400, "device id" },
		{ "PATCH", "/v1/vm/disks/%30", "{\"bps\": 1}", 400, "device id" }, /* no %-decoding */
		{ "PUT", "/v1/vm/paus%65", NULL, 404, "no route" },
		{ "GET", "/v1/vm%00", NULL, 404, "no route" },
		{ "PATCH",
		  "/v1/vm/disks/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "{\"bps\": 1}", 400, "device id" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"relative/dir\"}", 400, "absolute" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"\"}", 400, "must not be empty" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/a\\nb\"}", 400, "control characters" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/a\\u0000b\"}", 400, "control characters" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": 5}", 400, "must be a string" },
		{ "PUT", "/v1/vm/snapshot", "{}", 400, "missing field 'path'" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/s\", \"disk_overlay\": 1}", 400,
		  "'disk_overlay' must be true or false" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/s\", \"disk_overlay\": \"true\"}", 400,
		  "'disk_overlay' must be true or false" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/s\", \"disk_overlay\": null}", 400,
		  "'disk_overlay' must be true or false" },
		{ "PUT", "/v1/vm/snapshot", "{\"disk_overlay\": true}", 400, "missing field 'path'" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"10.0.0.1:4444\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:host:0\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:host:65536\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp::4444\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:a b:4444\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:[::1:4444\"}", 400, "tcp:HOST:PORT" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"key_file\": \"k\"}", 400,
		  "'key_file' must be absolute" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"compress\": \"lz4\"}", 400,
		  "'compress' must be zstd or none" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"max_bandwidth_mbps\": 100001}",
		  400, "at most 100000" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"max_bandwidth_mbps\": \"5\"}",
		  400, "must be an integer" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"max_downtime_ms\": 0}", 400,
		  "'max_downtime_ms' must be 1 to 60000" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"max_downtime_ms\": 60001}", 400,
		  "at most 60000" },
		{ "PUT", "/v1/vm/migrate", "{\"key_file\": \"/k\"}", 400, "missing field 'to'" },
		{ "PUT", "/v1/vm/migrate/cancel", "{\"x\": 1}", 400, "unknown field" },
		{ "GET", "/v1/vm?verbose=1", NULL, 400, "query parameters" },
		/* 501: not yet */
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/var/snap\"}", 501, "not implemented yet" },
		{ "PUT", "/v1/vm/snapshot", "{\"path\": \"/var/snap\", \"disk_overlay\": false}", 501,
		  "not implemented yet" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:10.0.0.2:4444\"}", 501,
		  "not implemented yet" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:[fe80::1]:4444\"}", 501,
		  "not implemented yet" },
		{ "PUT", "/v1/vm/migrate", "{\"to\": \"tcp:h:1\", \"key_file\": \"/k\", \"compress\": "
		  "\"zstd\", \"max_bandwidth_mbps\": 100000, \"max_downtime_ms\": 300}", 501,
		  "not implemented yet" },
		{ "PUT", "/v1/vm/migrate/cancel", NULL, 501, "not implemented yet" },
	};
	(void)state;
	check_bad(t, sizeof(t) / sizeof(t[0]));
	/* the VM ran on untouched */
	assert_false(fx.fake.paused);
	assert_int_equal(fx.fake.balloons + fx.fake.disk_limits + fx.fake.net_limits, 0);
	assert_int_equal(call_s("GET", "/v1/vm", NULL), 200);
}

static void test_nul_in_body(void **state)
{
	static const char req[] = "PUT /v1/vm/balloon HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                          "Content-Length: 18\r\n\r\n{\"target_mib\":\0 1}";
	char buf[4096];

	(void)state;
	raw(req, sizeof(req) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 400);
	assert_non_null(strstr(buf, "NUL"));
	assert_int_equal(fx.fake.calls, 0);
}

static void test_conflicts(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(call("PUT", "/v1/vm/resume", NULL, &r), 409);
	assert_non_null(strstr(r.body, "the VM is not paused"));
	api_response_free(&r);
	assert_int_equal(call_s("PUT", "/v1/vm/pause", NULL), 200);
	assert_int_equal(call("PUT", "/v1/vm/pause", NULL, &r), 409);
	assert_non_null(strstr(r.body, "already paused"));
	api_response_free(&r);
	/* -EBUSY without a message: "<action>: <strerror>" */
	assert_int_equal(call("PUT", "/v1/vm/shutdown", NULL, &r), 409);
	assert_non_null(strstr(r.body, "shutdown: "));
	api_response_free(&r);
	assert_int_equal(call_s("PUT", "/v1/vm/resume", NULL), 200);
	assert_int_equal(fx.fake.pauses, 1);
	assert_int_equal(fx.fake.resumes, 1);
}

static void test_backend_errors(void **state)
{
	struct api_response r;

	(void)state;
	/* -ENOENT without a message */
	assert_int_equal(call("PATCH", "/v1/vm/disks/7", "{\"bps\": 1}", &r), 404);
	assert_non_null(strstr(r.body, "disk limit: "));
	api_response_free(&r);
	/* -ENOENT with one */
	assert_int_equal(call("PATCH", "/v1/vm/nets/7", "{\"bps\": 1}", &r), 404);
	assert_non_null(strstr(r.body, "no network card '7'"));
	api_response_free(&r);
	/* -ERANGE: 400 with the backend's words */
	assert_int_equal(call("PUT", "/v1/vm/balloon", "{\"target_mib\": 5000}", &r), 400);
	assert_non_null(strstr(r.body, "above the guest's 4096 MiB"));
	api_response_free(&r);
	assert_int_equal(fx.fake.balloons, 0);
}

static void test_status_mapping(void **state)
{
	(void)state;
	assert_int_equal(api_status_from_errno(-EINVAL), 400);
	assert_int_equal(api_status_from_errno(-ERANGE), 400);
	assert_int_equal(api_status_from_errno(-ENODEV), 400);
	assert_int_equal(api_status_from_errno(-ENOENT), 404);
	assert_int_equal(api_status_from_errno(-EALREADY), 409);
	assert_int_equal(api_status_from_errno(-EBUSY), 409);
	assert_int_equal(api_status_from_errno(-EEXIST), 409);
	assert_int_equal(api_status_from_errno(-EINPROGRESS), 409);
	assert_int_equal(api_status_from_errno(-ENOSYS), 501);
	assert_int_equal(api_status_from_errno(-EOPNOTSUPP), 501);
	assert_int_equal(api_status_from_errno(-EAGAIN), 503);
	assert_int_equal(api_status_from_errno(-EIO), 500);
	assert_int_equal(api_status_from_errno(-ENOMEM), 500);
}

/* 405 carries Allow; every answer is JSON with its Content-Type */
static void test_headers(void **state)
{
	static const char req[] = "GET /v1/vm/pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char ok[] = "GET /v1/vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char m[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char head[] = "HEAD /v1/vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const char post[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char buf[8192];

	(void)state;
	raw(req, sizeof(req) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 405);
	assert_non_null(strstr(buf, "\r\nAllow: PUT\r\n"));
	assert_non_null(strstr(buf, "\r\nContent-Type: application/json\r\n"));
	raw(ok, sizeof(ok) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 200);
	assert_non_null(strstr(buf, "\r\nContent-Type: application/json\r\n"));
	raw(m, sizeof(m) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 200);
	assert_non_null(strstr(buf, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	raw(head, sizeof(head) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 200);
	assert_non_null(strstr(buf, "\r\n\r\n"));
	assert_string_equal(strstr(buf, "\r\n\r\n"), "\r\n\r\n"); /* no body */
	raw(post, sizeof(post) - 1, buf, sizeof(buf));
	assert_int_equal(raw_status(buf), 405);
	assert_non_null(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));
}

/* ---- bodies over the limit ---- */

static void test_body_1mib(void **state)
{
	size_t n = 1 << 20;
	char *body = malloc(n + 1);
	struct api_response r;

	(void)state;
	assert_non_null(body);
	/* valid JSON, only too big: {"target_mib": 1,     ...   } */
	memset(body, ' ', n);
	memcpy(body, "{\"target_mib\": 1", 16);
	body[n - 1] = '}';
	body[n] = '\0';
	assert_int_equal(call("PUT", "/v1/vm/balloon", body, &r), 413);
	assert_non_null(strstr(r.body, "larger than 65536"));
	api_response_free(&r);
	/* exactly the limit is fine */
	body[API_BODY_MAX - 1] = '}';
	body[API_BODY_MAX] = '\0';
	assert_int_equal(call_s("PUT", "/v1/vm/balloon", body), 200);
	assert_int_equal(fx.fake.target_mib, 1);
	/* one more byte is not */
	body[API_BODY_MAX - 1] = ' ';
	body[API_BODY_MAX] = '}';
	body[API_BODY_MAX + 1] = '\0';
	assert_int_equal(call_s("PUT", "/v1/vm/balloon", body), 413);
	free(body);
	assert_int_equal(fx.fake.balloons, 1);
	/* the server is fine afterwards */
	assert_int_equal(call_s("GET", "/v1/vm", NULL), 200);
}

static void test_body_chunked(void **state)
{
	static const char head[] = "PUT /v1/vm/balloon HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                           "Transfer-Encoding: chunked\r\n\r\n";
	char chunk[4096 + 16], buf[4096];
	int fd;

	(void)state;
	/* a small chunked body is fine */
	fd = sock_connect();
	send_all(fd, head, sizeof(head) - 1);
	send_all(fd, "5\r\n{\"tar\r\n", 10);
	send_all(fd, "e\r\nget_mib\": 77}\r\n0\r\n\r\n", 24);
	recv_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	assert_int_equal(raw_status(buf), 200);
	assert_int_equal(fx.fake.target_mib, 77);

	/* 100 chunks of 1000 bytes: over the limit, read to the end, then 413 */
	fd = sock_connect();
	send_all(fd, head, sizeof(head) - 1);
	memset(chunk, ' ', sizeof(chunk));
	memcpy(chunk, "3e8\r\n", 5);
	memcpy(chunk + 5 + 1000, "\r\n", 2);
	for (int i = 0; i < 100; i++)
		send_all(fd, chunk, 5 + 1000 + 2);
	send_all(fd, "0\r\n\r\n", 5);
	recv_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	assert_int_equal(raw_status(buf), 413);
	assert_non_null(strstr(buf, "{\"error\""));
	assert_int_equal(fx.fake.balloons, 1);
}

/* ---- many clients ---- */

struct worker {
	int ok, fail;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 10; i++) {
		struct api_response r;
		char err[256];
		const char *path = (i & 1) ? "/metrics" : "/v1/vm";
		if (api_client_request(fx.path, "GET", path, NULL, 10000, &r, err, sizeof(err)) == 0 &&
		    r.status == 200)
			w->ok++;
		else
			w->fail++;
		api_response_free(&r);
	}
	return NULL;
}

static void test_50_clients(void **state)
{
	enum { N = 50 };
	static const char req[] = "GET /v1/vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	pthread_t t[N];
	struct worker w[N];
	int fds[N];
	char buf[4096];

	(void)state;
	/* 50 connections open at once, all requests sent before any answer is read */
	for (int i = 0; i < N; i++)
		fds[i] = sock_connect();
	for (int i = 0; i < N; i++)
		send_all(fds[i], req, sizeof(req) - 1);
	for (int i = N - 1; i >= 0; i--) {
		recv_all(fds[i], buf, sizeof(buf), 5000);
		assert_int_equal(raw_status(buf), 200);
		close(fds[i]);
	}
	/* 50 threads, 10 requests each */
	memset(w, 0, sizeof(w));
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 10);
		assert_int_equal(w[i].fail, 0);
	}
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Clients that send half a request and stall hold up nobody else. */
static void test_stalled_clients(void **state)
{
	static const char half_line[] = "GET /v1/v";
	static const char half_head[] = "PUT /v1/vm/pause HTTP/1.1\r\nHost: x\r\nContent-Le";
	static const char head[] = "PUT /v1/vm/balloon HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                           "Content-Length: 20\r\n\r\n";
	char buf[4096];

	(void)state;
	int silent = sock_connect();
	int a = sock_connect(), b = sock_connect(), c = sock_connect();
	send_all(a, half_line, sizeof(half_line) - 1);
	send_all(b, half_head, sizeof(half_head) - 1);
	send_all(c, head, sizeof(head) - 1);
	send_all(c, "{\"target_", 9); /* 9 of 20 body bytes */
	usleep(50 * 1000);

	int64_t t0 = mono_ms();
	for (int i = 0; i < 20; i++)
		assert_int_equal(call_s("GET", "/v1/vm", NULL), 200);
	assert_true(mono_ms() - t0 < 3000);

	/* the stalled one finishes its body later and gets its answer */
	send_all(c, "mib\": 9}   ", 11);
	recv_all(c, buf, sizeof(buf), 5000);
	assert_int_equal(raw_status(buf), 200);
	assert_int_equal(fx.fake.target_mib, 9);
	assert_int_equal(fx.fake.pauses, 0);
	close(silent);
	close(a);
	close(b);
	close(c);
	assert_int_equal(call_s("GET", "/v1/vm", NULL), 200);
}

/* Two requests on one connection (HTTP/1.1 keep-alive). */
static void test_keepalive(void **state)
{
	static const char r1[] = "PUT /v1/vm/pause HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char r2[] = "PUT /v1/vm/resume HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
	                         "Content-Length: 2\r\n\r\n{}";
	char buf[8192];

	(void)state;
	int fd = sock_connect();
	send_all(fd, r1, sizeof(r1) - 1);
	send_all(fd, r2, sizeof(r2) - 1);
	recv_all(fd, buf, sizeof(buf), 5000);
	close(fd);
	assert_int_equal(raw_status(buf), 200);
	const char *second = strstr(buf + 1, "HTTP/1.1 ");
	assert_non_null(second);
	assert_int_equal(raw_status(second), 200);
	assert_int_equal(fx.fake.pauses, 1);
	assert_int_equal(fx.fake.resumes, 1);
}

/* Not HTTP at all: the HTTP layer refuses it; the server goes on. */
static void test_garbage(void **state)
{
	static const char *const junk[] = {
		"\x16\x03\x01\x02\x05\x01\x01\x01\xfc\x03\x03\r\n\r\n", /* TLS hello-ish */
		"GET\r\n\r\n",
		"GET /v1/vm HTTP/9.9\r\n\r\n",
		"GET /v1/vm HTTP/1.1\r\nNo colon here\r\n\r\n",
		"PUT /v1/vm/balloon HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
		"PUT /v1/vm/balloon HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	};
	char buf[4096];

	(void)state;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		raw(junk[i], strlen(junk[i]), buf, sizeof(buf));
		int st = raw_status(buf);
		assert_true(st == -1 || (st >= 400 && st < 600));
	}
	assert_int_equal(fx.fake.calls, 0);
	assert_int_equal(call_s("GET", "/v1/vm", NULL), 200);
}

/* ---- metrics ---- */

static bool name_ok(const char *s, size_t n, bool colon)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || (colon && c == ':')))
			return false;
	}
	return true;
}

/* A small checker for text format 0.0.4: comment lines, one TYPE per family
 * before its samples, name{label="value",...} value. Returns NULL or why not. */
static const char *prom_check(const char *text)
{
	char typed[64][80];
	int ntyped = 0;

	if (!*text || text[strlen(text) - 1] != '\n')
		return "does not end with a newline";
	for (const char *p = text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t n = (size_t)(eol - p);
		if (n == 0)
			return "empty line";
		if (p[0] == '#') {
			if (!strncmp(p, "# TYPE ", 7)) {
				const char *name = p + 7, *sp = memchr(name, ' ', (size_t)(eol - name));
				if (!sp || !name_ok(name, (size_t)(sp - name), true))
					return "bad TYPE line";
				const char *type = sp + 1;
				size_t tl = (size_t)(eol - type);
				if (!((tl == 7 && !strncmp(type, "counter", 7)) ||
				      (tl == 5 && !strncmp(type, "gauge", 5)) ||
				      (tl == 7 && !strncmp(type, "untyped", 7))))
					return "bad type";
				for (int i = 0; i < ntyped; i++)
					if (strlen(typed[i]) == (size_t)(sp - name) &&
					    !strncmp(typed[i], name, (size_t)(sp - name)))
						return "TYPE twice";
				if (ntyped == 64)
					return "too many families";
				snprintf(typed[ntyped++], sizeof(typed[0]), "%.*s", (int)(sp - name), name);
			}
			p = eol + 1;
			continue;
		}
		size_t nl = strcspn(p, "{ ");
		if (!name_ok(p, nl, true))
			return "bad metric name";
		bool known = false;
		for (int i = 0; i < ntyped; i++)
			if (strlen(typed[i]) == nl && !strncmp(typed[i], p, nl))
				known = true;
		if (!known)
			return "sample before its TYPE";
		const char *q = p + nl;
		if (*q == '{') {
			q++;
			while (*q != '}') {
				size_t ln = strcspn(q, "=");
				if (!name_ok(q, ln, false) || q[ln] != '=' || q[ln + 1] != '"')
					return "bad label";
				q += ln + 2;
				while (*q != '"') {
					if (*q == '\n' || !*q)
						return "unterminated label value";
					if (*q == '\\') {
						if (q[1] != '\\' && q[1] != '"' && q[1] != 'n')
							return "bad escape";
						q++;
					}
					q++;
				}
				q++;
				if (*q == ',')
					q++;
				else if (*q != '}')
					return "bad label list";
			}
			q++;
		}
		if (*q != ' ')
			return "no space before the value";
		q++;
		char *end;
		if (strncmp(q, "+Inf", 4) && strncmp(q, "-Inf", 4) && strncmp(q, "NaN", 3)) {
			strtod(q, &end);
			if (end == q || (*end != '\n' && *end != ' '))
				return "bad value";
		}
		p = eol + 1;
	}
	return NULL;
}

static void test_metrics(void **state)
{
	struct api_response r;

	(void)state;
	assert_int_equal(call_s("PUT", "/v1/vm/stop", NULL), 200);
	assert_int_equal(call_s("PUT", "/v1/vm/resume", NULL), 409);
	assert_int_equal(call("GET", "/metrics", NULL, &r), 200);
	const char *why = prom_check(r.body);
	if (why)
		fail_msg("metrics: %s\n%s", why, r.body);
	assert_non_null(strstr(r.body, "cvisor_api_responses_total{code=\"200\"} 1\n"));
	assert_non_null(strstr(r.body, "cvisor_api_responses_total{code=\"409\"} 1\n"));
	assert_non_null(strstr(r.body, "cvisor_vcpu_seconds_total{vcpu=\"0\"} 1.5\n"));
	api_response_free(&r);
	assert_int_equal(fx.fake.metrics, 1);
}

static void test_prom_helpers(void **state)
{
	struct sbuf b = { 0 };
	const char *labels[] = { "path", "a\\b\"c\nd", "k", "v", NULL };

	(void)state;
	api_prom_family(&b, "x_total", "counter", "help with \\ and\nnewline");
	api_prom_sample(&b, "x_total", labels, UINT64_MAX);
	api_prom_sample(&b, "x_total", NULL, 0);
	api_prom_family(&b, "y", "gauge", "doubles");
	api_prom_sample_double(&b, "y", NULL, 0.25);
	api_prom_sample_double(&b, "y", labels + 2, INFINITY);
	api_prom_sample_double(&b, "y", NULL, -INFINITY);
	api_prom_sample_double(&b, "y", NULL, NAN);
	sbuf_put_u8(&b, 0);
	assert_int_equal(b.err, 0);
	assert_string_equal((char *)b.data,
	                    "# HELP x_total help with \\\\ and\\nnewline\n"
	                    "# TYPE x_total counter\n"
	                    "x_total{path=\"a\\\\b\\\"c\\nd\",k=\"v\"} 18446744073709551615\n"
	                    "x_total 0\n"
	                    "# HELP y doubles\n"
	                    "# TYPE y gauge\n"
	                    "y 0.25\n"
	                    "y{k=\"v\"} +Inf\n"
	                    "y -Inf\n"
	                    "y NaN\n");
	assert_null(prom_check((char *)b.data));
	sbuf_free(&b);
}

/* ---- the socket file ---- */

static void test_socket_file(void **state)
{
	struct api_backend b = fake_backend(&fx.fake);
	struct api_server *s;
	struct evloop *l = evloop_create();
	char err[256], p[160], longp[200];
	struct stat st;

	(void)state;
	assert_non_null(l);
	/* the fixture's server made it 0600 */
	assert_int_equal(stat(fx.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* a live server's socket is not taken over */
	assert_int_equal(api_server_start(l, fx.path, &b, &s, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "in use"));
	assert_null(s);

	/* a stale socket file is replaced */
	snprintf(p, sizeof(p), "%s/stale.sock", fx.dir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, p, strlen(p) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* never listened: nobody answers */
	assert_int_equal(api_server_start(l, p, &b, &s, err, sizeof(err)), 0);
	api_server_stop(s);
	assert_int_equal(lstat(p, &st), -1); /* removed on stop */

	/* anything else at the path is an error and is left alone */
	snprintf(p, sizeof(p), "%s/file", fx.dir);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(api_server_start(l, p, &b, &s, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(p);

	snprintf(p, sizeof(p), "%s/dir", fx.dir);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(api_server_start(l, p, &b, &s, err, sizeof(err)), -EEXIST);
	rmdir(p);

	/* no such directory; a path too long for sockaddr_un; an empty one */
	snprintf(p, sizeof(p), "%s/no/such/api.sock", fx.dir);
	assert_int_equal(api_server_start(l, p, &b, &s, err, sizeof(err)), -ENOENT);
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(api_server_start(l, longp, &b, &s, err, sizeof(err)), -EINVAL);
	assert_int_equal(api_server_start(l, "", &b, &s, err, sizeof(err)), -EINVAL);

	/* stop does not remove a file that replaced ours */
	snprintf(p, sizeof(p), "%s/replaced.sock", fx.dir);
	assert_int_equal(api_server_start(l, p, &b, &s, err, sizeof(err)), 0);
	unlink(p);
	fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	api_server_stop(s);
	assert_int_equal(lstat(p, &st), 0);
	unlink(p);
	api_server_stop(NULL);
	evloop_destroy(l);
}

/* ---- detach / attach across a guest reset ---- */

struct pending {
	int status;
	atomic_bool done;
};

static void *pending_main(void *arg)
{
	struct pending *p = arg;
	struct api_response r;
	char err[256];
	if (api_client_request(fx.path, "GET", "/v1/vm", NULL, 10000, &r, err, sizeof(err)) == 0)
		p->status = r.status;
	api_response_free(&r);
	atomic_store(&p->done, true);
	return NULL;
}

static void test_detach_attach(void **state)
{
	struct fake second = { .name = "second" };
	struct api_backend b2 = fake_backend(&second);
	struct pending p = { 0 };
	pthread_t t;

	(void)state;
	second.cfg = fx.fake.cfg;
	loop_stop(&fx);
	api_server_detach(fx.srv);
	evloop_destroy(fx.loop);

	/* a client arrives while no loop serves the socket: it waits */
	assert_int_equal(pthread_create(&t, NULL, pending_main, &p), 0);
	usleep(200 * 1000);
	assert_false(atomic_load(&p.done));

	fx.loop = evloop_create();
	assert_non_null(fx.loop);
	assert_int_equal(api_server_attach(fx.srv, fx.loop, &b2), 0);
	assert_int_equal(api_server_attach(fx.srv, fx.loop, &b2), -EBUSY);
	loop_start(&fx);
	pthread_join(t, NULL);
	assert_int_equal(p.status, 200);
	assert_int_equal(second.calls, 1); /* answered by the new backend */
	assert_int_equal(fx.fake.calls, 0);
}

/* "stop" ends the VMM's loop right after the callback, and the server is
 * stopped at once: the client still gets its answer, the file is gone. */
struct stopper {
	int status;
};

static void *stopper_main(void *arg)
{
	struct stopper *st = arg;
	struct api_response r;
	char err[256];
	if (api_client_request(fx.path, "PUT", "/v1/vm/stop", NULL, 5000, &r, err, sizeof(err)) == 0)
		st->status = r.status;
	api_response_free(&r);
	return NULL;
}

static void test_stop_answers(void **state)
{
	struct stopper st = { 0 };
	struct stat sb;
	pthread_t t;

	(void)state;
	fx.fake.stop_ends_loop = true;
	assert_int_equal(pthread_create(&t, NULL, stopper_main, &st), 0);
	pthread_join(fx.thread, NULL); /* ends when the backend's stop ran */
	fx.running = false;
	api_server_stop(fx.srv);
	fx.srv = NULL;
	pthread_join(t, NULL);
	assert_int_equal(st.status, 200);
	assert_int_equal(fx.fake.stops, 1);
	assert_int_equal(lstat(fx.path, &sb), -1);
	assert_int_equal(errno, ENOENT);
}

/* ---- a connection handed over directly ---- */

static void test_add_connection(void **state)
{
	static const char req[] = "GET /v1/vm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	int sv[2];
	char buf[4096];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_all(sv[0], req, sizeof(req) - 1);
	loop_stop(&fx); /* add_connection runs on the loop's thread in real use */
	assert_int_equal(api_server_add_connection(fx.srv, sv[1]), 0);
	loop_start(&fx);
	recv_all(sv[0], buf, sizeof(buf), 5000);
	close(sv[0]);
	assert_int_equal(raw_status(buf), 200);
}

/* ---- cvisor ctl ---- */

static int ctl(const char *first, ...)
{
	char *argv[16];
	int argc = 0;
	va_list ap;

	argv[argc++] = "ctl";
	va_start(ap, first);
	for (const char *a = first; a && argc < 15; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	/* keep the output off the test log */
	fflush(stdout);
	fflush(stderr);
	int out = dup(1), errfd = dup(2), null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	dup2(null, 2);
	int rc = api_ctl_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(errfd, 2);
	close(out);
	close(errfd);
	close(null);
	return rc;
}

static void test_ctl(void **state)
{
	const char *s = fx.path;

	(void)state;
	assert_int_equal(ctl("--api-socket", s, "info", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "pause", NULL), 0);
	assert_true(fx.fake.paused);
	assert_int_equal(ctl("--api-socket", s, "pause", NULL), 1); /* 409 */
	assert_int_equal(ctl("--api-socket=", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "--timeout", "5", "resume", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "shutdown", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "stop", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "balloon", "128", NULL), 0);
	assert_int_equal(fx.fake.target_mib, 128);
	assert_int_equal(ctl("--api-socket", s, "balloon", "99999", NULL), 1); /* the VMM's 400 */
	assert_int_equal(ctl("--api-socket", s, "disk-limit", "0", "bps=1000", "iops=10", NULL), 0);
	assert_int_equal(fx.fake.limits.bps, 1000);
	assert_int_equal(fx.fake.limits.ops, 10);
	assert_int_equal(ctl("--api-socket", s, "net-limit", "net.0", "pps=5", NULL), 0);
	assert_int_equal(fx.fake.limits.ops, 5);
	assert_int_equal(ctl("--api-socket", s, "net-limit", "9", "pps=5", NULL), 1); /* 404 */
	assert_int_equal(ctl("--api-socket", s, "metrics", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "snapshot", "snapdir", NULL), 1); /* 501 */
	assert_int_equal(ctl("--api-socket", s, "snapshot", "snapdir", "--disk-overlay", NULL), 1);
	assert_int_equal(ctl("--api-socket", s, "snapshot", "--disk-overlay", "/d", NULL), 1);
	assert_int_equal(ctl("--api-socket", s, "snapshot", "--disk-overlay", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "snapshot", "a", "b", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", NULL), 1); /* 501 */
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--key-file", "k", "--compress",
	                     "zstd", "--max-bandwidth", "8", "--max-downtime", "200", NULL), 1); /* 501 */
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--max-downtime", "-1", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--compress", "lz4", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--key-file", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--max-bandwidth", "x", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "tcp:h:1", "--frob", "1", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate-cancel", NULL), 1);    /* 501 */
	assert_int_equal(ctl("--api-socket", s, "request", "GET", "/v1/vm", NULL), 0);
	assert_int_equal(ctl("--api-socket", s, "request", "PUT", "/v1/vm/balloon",
	                     "{\"target_mib\": 3}", NULL),
	                 0);
	assert_int_equal(fx.fake.target_mib, 3);
	int before = fx.fake.calls;
	assert_int_equal(ctl("--api-socket", s, "request", "PUT", "/v1/vm/balloon", "{", NULL), 1);
	assert_int_equal(ctl("--api-socket", s, "request", "POST", "/v1/vm", NULL), 1);
	assert_int_equal(ctl("--api-socket", s, "request", "GET", "/nope", NULL), 1);
	assert_int_equal(fx.fake.calls, before);

	/* bad usage: 2, and nothing reaches the VM */
	int calls = fx.fake.calls;
	assert_int_equal(ctl(NULL), 2);
	assert_int_equal(ctl("info", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "frobnicate", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "info", "extra", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "balloon", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "balloon", "12x", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "balloon", "-1", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "balloon", "99999999999999999999", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "disk-limit", "0", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "disk-limit", "a/b", "bps=1", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "disk-limit", "0", "pps=1", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "disk-limit", "0", "bps=", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "migrate", "10.0.0.1:4", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "--timeout", "x", "info", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "--bogus", "info", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "request", "GET", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "request", "get", "/v1/vm", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "request", "GET", "v1/vm", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "request", "GET", "/v1/vm HTTP/1.0", NULL), 2);
	assert_int_equal(ctl("--api-socket", s, "request", "GET", "/v1/vm\r\nX: y", NULL), 2);
	assert_int_equal(fx.fake.calls, calls);
	assert_int_equal(ctl("--help", NULL), 0);

	/* no server there: 1 */
	assert_int_equal(ctl("--api-socket", "/nonexistent/api.sock", "info", NULL), 1);
}

/* ---- the option ---- */

static void test_config_option(void **state)
{
	struct vm_config cfg;
	char err[256], longp[130];
	char *a1[] = { "run", "--kernel", "k", "--api-socket", "/run/vm.sock", NULL };
	char *a2[] = { "run", "--kernel", "k", "--api-socket=/run/vm2.sock", NULL };
	char *a3[] = { "run", "--kernel", "k", "--api-socket", "", NULL };
	char *a4[] = { "run", "--kernel", "k", "--api-socket", longp, NULL };
	char *a5[] = { "run", "--kernel", "k", "--api-socket", NULL };
	char *a6[] = { "run", "--kernel", "k", NULL };

	(void)state;
	assert_int_equal(config_parse_run(&cfg, 5, a1, err, sizeof(err)), 0);
	assert_string_equal(cfg.api_socket, "/run/vm.sock");
	assert_int_equal(config_parse_run(&cfg, 4, a2, err, sizeof(err)), 0);
	assert_string_equal(cfg.api_socket, "/run/vm2.sock");
	assert_int_equal(config_parse_run(&cfg, 5, a3, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--api-socket"));
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(config_parse_run(&cfg, 5, a4, err, sizeof(err)), -EINVAL);
	longp[107] = '\0';
	assert_int_equal(config_parse_run(&cfg, 5, a4, err, sizeof(err)), 0);
	assert_int_equal(config_parse_run(&cfg, 4, a5, err, sizeof(err)), -EINVAL);
	assert_int_equal(config_parse_run(&cfg, 3, a6, err, sizeof(err)), 0);
	assert_null(cfg.api_socket);

	struct json_object *o = api_config_json(&cfg), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "api_socket", &v));
	assert_null(v);
	assert_true(json_object_object_get_ex(o, "kernel", &v));
	assert_string_equal(json_object_get_string(v), "k");
	assert_true(json_object_object_get_ex(o, "serial", &v));
	assert_string_equal(json_object_get_string(v), "stdio");
	json_object_put(o);
}

/* ---- without a socket: the request function alone ---- */

static void test_handle_direct(void **state)
{
	struct api_backend none = { 0 };
	struct api_reply r;

	(void)state;
	/* every route of an empty backend: 501, except metrics (the server's own) */
	for (size_t i = 0; i < api_nr_routes; i++) {
		const struct api_route *rt = &api_routes[i];
		char path[64];
		const char *body = NULL;
		snprintf(path, sizeof(path), "%s", rt->path);
		char *id = strstr(path, "{id}");
		if (id)
			memcpy(id, "0", 2);
		if (!strcmp(rt->path, "/v1/vm/balloon"))
			body = "{\"target_mib\": 1}";
		else if (strstr(rt->path, "/disks/") || strstr(rt->path, "/nets/"))
			body = "{\"bps\": 1}";
		else if (!strcmp(rt->path, "/v1/vm/snapshot"))
			body = "{\"path\": \"/x\"}";
		else if (!strcmp(rt->path, "/v1/vm/migrate"))
			body = "{\"to\": \"tcp:x:1\"}";
		api_handle(&none, NULL, rt->method, path, body, body ? strlen(body) : 0, &r);
		if (!strcmp(rt->path, "/metrics")) {
			assert_int_equal(r.status, 200);
			assert_null(prom_check(r.body));
		} else {
			assert_int_equal(r.status, 501);
			assert_non_null(strstr(r.body, "not implemented yet"));
		}
		api_reply_free(&r);
	}
	/* a path echoed in an error is made printable */
	api_handle(&none, NULL, "GET", "/\x01\xff\"x", NULL, 0, &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "/??\\\"x"));
	api_reply_free(&r);
}

static int info_no_state(void *o, struct json_object *out, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	json_object_object_add(out, "state", json_object_new_string("confused"));
	return 0;
}

static int info_fails(void *o, struct json_object *out, char *err, size_t errlen)
{
	(void)o;
	(void)out;
	snprintf(err, errlen, "cannot read the VM's state");
	return -EIO;
}

static int metrics_fail(void *o, struct sbuf *text)
{
	(void)o;
	(void)text;
	return -EIO;
}

static int pause_positive(void *o, char *err, size_t errlen)
{
	(void)o;
	(void)err;
	(void)errlen;
	return 3;
}

static void test_backend_misbehaves(void **state)
{
	struct api_backend b = { .info = info_no_state, .metrics = metrics_fail,
		                 .pause = pause_positive };
	struct api_reply r;

	(void)state;
	api_handle(&b, NULL, "GET", "/v1/vm", NULL, 0, &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(r.body, "no valid state"));
	api_reply_free(&r);
	b.info = info_fails;
	api_handle(&b, NULL, "GET", "/v1/vm", NULL, 0, &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(r.body, "cannot read the VM's state"));
	api_reply_free(&r);
	api_handle(&b, NULL, "GET", "/metrics", NULL, 0, &r);
	assert_int_equal(r.status, 500);
	assert_string_equal(r.content_type, "application/json");
	api_reply_free(&r);
	api_handle(&b, NULL, "PUT", "/v1/vm/pause", NULL, 0, &r);
	assert_int_equal(r.status, 500);
	api_reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_routes_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nul_in_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_errors, setup, teardown),
		cmocka_unit_test(test_status_mapping),
		cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_1mib, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_chunked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_50_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test(test_prom_helpers),
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach_attach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctl, setup, teardown),
		cmocka_unit_test(test_config_option),
		cmocka_unit_test(test_handle_direct),
		cmocka_unit_test(test_backend_misbehaves),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
