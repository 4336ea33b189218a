/* API client and `cvisor ctl`. The client speaks just enough HTTP/1.1 for our
 * own server: one request per connection ("Connection: close"), the answer
 * read until the server closes, a Content-Length or chunked body. */
#include "api/client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api/api.h"
#include "util/log.h"

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define CTL_DEFAULT_TIMEOUT_S 60

void api_response_free(struct api_response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

/* Unsigned decimal or hex number of the whole [s, s+n); false if not one or too big. */
static bool parse_num(const char *s, size_t n, int base, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		int d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		if (v > (max - (uint64_t)d) / (uint64_t)base)
			return false;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	*out = v;
	return true;
}

/* The end of the line starting at p (the CR of its CRLF), or NULL. */
static const char *line_end(const char *p, const char *end)
{
	for (; p + 1 < end; p++) {
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	}
	return NULL;
}

/* Decode a chunked body from [p, end) into out (at least end - p bytes). */
static int dechunk(const char *p, const char *end, char *out, size_t *outlen)
{
	size_t n = 0;

	for (;;) {
		const char *eol = line_end(p, end);
		if (!eol)
			return -EAGAIN;
		size_t digits = strcspn(p, ";\r");
		if (p + digits > eol)
			digits = (size_t)(eol - p);
		uint64_t size;
		if (!parse_num(p, digits, 16, API_CLIENT_MAX_RESPONSE, &size))
			return -EPROTO;
		p = eol + 2;
		if (size == 0)
			break; /* trailers, if any, are ignored */
		if ((uint64_t)(end - p) < size + 2)
			return -EAGAIN;
		if (p[size] != '\r' || p[size + 1] != '\n')
			return -EPROTO;
		memcpy(out + n, p, size);
		n += size;
		p += size + 2;
	}
	*outlen = n;
	return 0;
}

/* Parse one answer starting at buf; *used is where the next would start. */
static int parse_one(const char *buf, size_t len, struct api_response *resp, size_t *used)
{
	const char *end = buf + len, *p = buf;
	uint64_t clen = 0, status;
	bool has_clen = false, chunked = false;

	/* "HTTP/1.x NNN reason" */
	const char *eol = line_end(p, end);
	if (!eol)
		return -EAGAIN;
	if (eol - p < 12 || strncmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || !parse_num(p + 9, 3, 10, 999, &status) || status < 100 ||
	    (eol - p > 12 && p[12] != ' '))
		return -EPROTO;
	p = eol + 2;
	for (;;) {
		eol = line_end(p, end);
		if (!eol)
			return -EAGAIN;
		if (eol == p)
			break;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return -EPROTO;
		size_t nlen = (size_t)(colon - p);
		const char *v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		size_t vlen = (size_t)(eol - v);
		while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (nlen == 14 && !strncasecmp(p, "Content-Length", 14)) {
			if (!parse_num(v, vlen, 10, API_CLIENT_MAX_RESPONSE, &clen))
				return -EPROTO;
			has_clen = true;
		} else if (nlen == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
			if (vlen != 7 || strncasecmp(v, "chunked", 7))
				return -EPROTO; /* nothing else is ever sent to us */
			chunked = true;
		}
		p = eol + 2;
	}
	p += 2;
	if (status < 200) { /* interim answer (100 Continue): no body, another follows */
		*used = (size_t)(p - buf);
		resp->status = (int)status;
		return 0;
	}
	size_t avail = (size_t)(end - p), n = avail;
	char *body = malloc(avail + 1);
	if (!body)
		return -ENOMEM;
	if (chunked) {
		int rc = dechunk(p, end, body, &n);
		if (rc < 0) {
			free(body);
			return rc;
		}
	} else if (has_clen) {
		if (clen > avail) {
			free(body);
			return -EAGAIN;
		}
		n = (size_t)clen;
		memcpy(body, p, n);
	} else {
		memcpy(body, p, n); /* until the server closed */
	}
	body[n] = '\0';
	resp->status = (int)status;
	resp->body = body;
	resp->len = n;
	*used = len;
	return 0;
}

int api_client_parse(const char *buf, size_t len, struct api_response *resp)
{
	size_t used;

	memset(resp, 0, sizeof(*resp));
	for (;;) {
		int rc = parse_one(buf, len, resp, &used);
		if (rc < 0)
			return rc;
		if (resp->status >= 200)
			return 0;
		buf += used;
		len -= used;
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until the deadline (-1: none). 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		int ms = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		int n = poll(&pfd, 1, ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

int api_client_request(const char *sock, const char *method, const char *path, const char *body,
                       int timeout_ms, struct api_response *resp, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
	size_t blen = body ? strlen(body) : 0, cap = 4096, len = 0;
	char *req = NULL, *buf = NULL;
	int fd = -1, rc;

	memset(resp, 0, sizeof(*resp));
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "API socket path %s is too long", sock);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int n = asprintf(&req,
	                 "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	                 "Accept: application/json\r\nContent-Type: application/json\r\n"
	                 "Content-Length: %zu\r\n\r\n%s",
	                 method, path, blen, body ? body : "");
	if (n < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* a blocking connect waits while the server's backlog is full (bounded
	 * by SO_SNDTIMEO); the exchange itself is non-blocking, under poll */
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || (timeout_ms > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot connect to %s: %s", sock, strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
		} else if (w < 0 && errno == EAGAIN) {
			rc = wait_fd(fd, POLLOUT, deadline);
			if (rc < 0)
				goto io_error;
		} else if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			break; /* it answered early (413) and closed: read that */
		} else if (w < 0 && errno != EINTR) {
			rc = -errno;
			goto io_error;
		}
	}
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		goto io_error;
	}
	for (;;) {
		if (len + 1 >= cap) {
			if (cap >= API_CLIENT_MAX_RESPONSE) {
				rc = -EFBIG;
				goto io_error;
			}
			char *p = realloc(buf, cap * 2);
			if (!p) {
				rc = -ENOMEM;
				goto io_error;
			}
			buf = p;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r > 0) {
			len += (size_t)r;
		} else if (r == 0) {
			break;
		} else if (errno == EAGAIN) {
			rc = wait_fd(fd, POLLIN, deadline);
			if (rc < 0)
				goto io_error;
		} else if (errno == ECONNRESET) {
			break;
		} else if (errno != EINTR) {
			rc = -errno;
			goto io_error;
		}
	}
	rc = api_client_parse(buf, len, resp);
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", sock,
		         len ? "malformed or incomplete answer" : "no answer (connection closed)");
	goto out;
io_error:
	snprintf(err, errlen, "%s: %s", sock,
	         rc == -ETIMEDOUT ? "no answer in time" : strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(buf);
	return rc;
}

/* cvisor ctl */

static void ctl_usage(FILE *f)
{
	fputs("usage: cvisor ctl --api-socket PATH [--timeout SECS] VERB [ARG]\n"
	      "verbs:\n"
	      "  info                            state, configuration, devices (JSON)\n"
	      "  pause | resume                  stop or restart the vCPUs\n"
	      "  shutdown                        press the ACPI power button\n"
	      "  stop                            end the VM at once\n"
	      "  balloon MIB                     set the balloon target\n"
	      "  disk-limit ID [bps=N] [iops=N]  change a disk's rate limits (0: none)\n"
	      "  net-limit ID [bps=N] [pps=N]    change a NIC's rate limits (0: none)\n"
	      "  snapshot DIR [--disk-overlay]   save the VM to DIR; --disk-overlay: freeze the\n"
	      "                                  disks with it, the VM goes on on new overlays\n"
	      "  migrate tcp:HOST:PORT [--key-file F] [--compress zstd] [--max-bandwidth MBPS]\n"
	      "          [--max-downtime MS] [--postcopy]\n"
	      "                                  live-migrate the VM (key: HMAC on the stream;\n"
	      "                                  bandwidth cap in MB/s; downtime budget, 50 ms)\n"
	      "  migrate-cancel                  cancel a running migration\n"
	      "  metrics                         Prometheus text\n"
	      "  request METHOD PATH [BODY]      any request as it is; prints \"HTTP <status>\"\n"
	      "                                  and the body as it came (scripts, tests)\n"
	      "exit status: 0 done, 1 the VMM refused or did not answer, 2 bad usage\n",
	      f);
}

static bool ctl_num(const char *s, uint64_t *out)
{
	return parse_num(s, strlen(s), 10, API_INT_MAX, out);
}

static bool ctl_id(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= API_ID_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Body for disk-limit / net-limit from "key=N" arguments. */
static int ctl_limits(struct json_object *o, char **args, int nargs, const char *ops_key)
{
	if (nargs < 1)
		return -EINVAL;
	for (int i = 0; i < nargs; i++) {
		const char *eq = strchr(args[i], '=');
		uint64_t v;
		if (!eq || !ctl_num(eq + 1, &v))
			return -EINVAL;
		size_t klen = (size_t)(eq - args[i]);
		const char *key = NULL;
		if (klen == 3 && !strncmp(args[i], "bps", 3))
			key = "bps";
		else if (klen == strlen(ops_key) && !strncmp(args[i], ops_key, klen))
			key = ops_key;
		if (!key)
			return -EINVAL;
		json_object_object_add(o, key, json_object_new_uint64(v));
	}
	return 0;
}

/* An absolute form of path (the VMM's directory is not ours). */
static bool ctl_abspath(const char *path, char *out, size_t outlen)
{
	char cwd[PATH_MAX];
	if (!path[0])
		return false;
	if (path[0] == '/')
		return (size_t)snprintf(out, outlen, "%s", path) < outlen;
	return getcwd(cwd, sizeof(cwd)) && (size_t)snprintf(out, outlen, "%s/%s", cwd, path) < outlen;
}

/* Body for migrate: tcp:HOST:PORT, then --key-file F, --compress zstd|none,
 * --max-bandwidth MBPS, --max-downtime MS. */
static bool ctl_migrate(struct json_object *o, char **args, int nargs)
{
	char key[PATH_MAX];
	uint64_t v;

	if (nargs < 1 || strncmp(args[0], "tcp:", 4))
		return false;
	json_object_object_add(o, "to", json_object_new_string(args[0]));
	for (int i = 1; i < nargs; i += 2) {
		if (!strcmp(args[i], "--postcopy")) {
			json_object_object_add(o, "postcopy", json_object_new_boolean(true));
			i--; /* a flag without a value */
			continue;
		}
		if (i + 1 >= nargs)
			return false;
		if (!strcmp(args[i], "--key-file") && ctl_abspath(args[i + 1], key, sizeof(key)))
			json_object_object_add(o, "key_file", json_object_new_string(key));
		else if (!strcmp(args[i], "--compress") &&
		         (!strcmp(args[i + 1], "zstd") || !strcmp(args[i + 1], "none")))
			json_object_object_add(o, "compress", json_object_new_string(args[i + 1]));
		else if (!strcmp(args[i], "--max-bandwidth") && ctl_num(args[i + 1], &v))
			json_object_object_add(o, "max_bandwidth_mbps", json_object_new_uint64(v));
		else if (!strcmp(args[i], "--max-downtime") && ctl_num(args[i + 1], &v))
			json_object_object_add(o, "max_downtime_ms", json_object_new_uint64(v));
		else
			return false;
	}
	return true;
}

/* Print a 2xx answer: JSON pretty, anything else (metrics) as it is. */
static void ctl_print(const struct api_response *resp)
{
	struct json_object *o = json_tokener_parse(resp->body);

	if (!o) {
		fwrite(resp->body, 1, resp->len, stdout);
		return;
	}
	if (json_object_is_type(o, json_type_object) && json_object_object_length(o) == 0)
		puts("{}");
	else
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		                                               JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static void ctl_print_error(const struct api_response *resp)
{
	struct json_object *o = json_tokener_parse(resp->body), *e;

	if (o && json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_string))
		log_error("%s", json_object_get_string(e));
	else
		log_error("the VMM answered HTTP %d", resp->status);
	json_object_put(o);
}

int api_ctl_main(int argc, char **argv)
{
	const char *sock = NULL, *method = "PUT", *raw_body = NULL;
	char path[128], abspath[PATH_MAX], err[512];
	uint64_t timeout_s = CTL_DEFAULT_TIMEOUT_S, v;
	struct json_object *body = NULL;
	struct api_response resp;
	int i = 1, rc = EXIT_USAGE;

	for (; i < argc && !strncmp(argv[i], "-", 1); i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			ctl_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--api-socket") && i + 1 < argc) {
			sock = argv[++i];
		} else if (!strncmp(a, "--api-socket=", 13)) {
			sock = a + 13;
		} else if (!strcmp(a, "--timeout") && i + 1 < argc && ctl_num(argv[i + 1], &timeout_s)) {
			i++;
		} else if (!strncmp(a, "--timeout=", 10) && ctl_num(a + 10, &timeout_s)) {
			/* stored */
		} else {
			log_error("ctl: bad option '%s' (see cvisor ctl --help)", a);
			return EXIT_USAGE;
		}
	}
	if (!sock || !*sock || i >= argc) {
		log_error("ctl: %s (see cvisor ctl --help)",
		          !sock || !*sock ? "--api-socket PATH is required" : "no verb given");
		return EXIT_USAGE;
	}
	if (timeout_s > INT_MAX / 1000) {
		log_error("ctl: --timeout is too large");
		return EXIT_USAGE;
	}
	const char *verb = argv[i++];
	char **args = argv + i;
	int nargs = argc - i;

	body = json_object_new_object();
	if (!body) {
		log_error("ctl: out of memory");
		return EXIT_ERROR;
	}
	snprintf(path, sizeof(path), "/v1/vm/%s", verb);
	bool ok = nargs == 0;
	if (!strcmp(verb, "info")) {
		method = "GET";
		snprintf(path, sizeof(path), "/v1/vm");
	} else if (!strcmp(verb, "metrics")) {
		method = "GET";
		snprintf(path, sizeof(path), "/metrics");
	} else if (!strcmp(verb, "pause") || !strcmp(verb, "resume") ||
	           !strcmp(verb, "shutdown") || !strcmp(verb, "stop")) {
		/* path as it is */
	} else if (!strcmp(verb, "migrate-cancel")) {
		snprintf(path, sizeof(path), "/v1/vm/migrate/cancel");
	} else if (!strcmp(verb, "balloon")) {
		ok = nargs == 1 && ctl_num(args[0], &v);
		if (ok)
			json_object_object_add(body, "target_mib", json_object_new_uint64(v));
	} else if (!strcmp(verb, "snapshot")) {
		/* DIR and, before or after it, --disk-overlay */
		bool overlay = nargs == 2 && (!strcmp(args[0], "--disk-overlay") ||
		                              !strcmp(args[1], "--disk-overlay"));
		const char *dir = overlay && !strcmp(args[0], "--disk-overlay") ? args[1] : args[0];
		ok = (nargs == 1 || overlay) && dir[0] && strcmp(dir, "--disk-overlay");
		if (ok && dir[0] != '/') { /* the VMM's directory is not ours */
			char cwd[PATH_MAX];
			ok = getcwd(cwd, sizeof(cwd)) &&
			     (size_t)snprintf(abspath, sizeof(abspath), "%s/%s", cwd, dir) <
			             sizeof(abspath);
		} else if (ok) {
			snprintf(abspath, sizeof(abspath), "%s", dir);
		}
		if (ok)
			json_object_object_add(body, "path", json_object_new_string(abspath));
		if (ok && overlay)
			json_object_object_add(body, "disk_overlay", json_object_new_boolean(1));
	} else if (!strcmp(verb, "migrate")) {
		ok = ctl_migrate(body, args, nargs);
	} else if (!strcmp(verb, "request")) {
		/* sent as given, so that tests can send what the other verbs never would;
		 * only what would break the request line itself is refused */
		ok = (nargs == 2 || nargs == 3) && args[0][0] &&
		     strspn(args[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == strlen(args[0]) &&
		     args[1][0] == '/' && strlen(args[1]) < sizeof(path) &&
		     !strpbrk(args[1], " \t\r\n");
		if (ok) {
			method = args[0];
			snprintf(path, sizeof(path), "%s", args[1]);
			raw_body = nargs == 3 ? args[2] : NULL;
		}
	} else if (!strcmp(verb, "disk-limit") || !strcmp(verb, "net-limit")) {
		bool disk = verb[0] == 'd';
		method = "PATCH";
		ok = nargs >= 2 && nargs <= 3 && ctl_id(args[0]) &&
		     ctl_limits(body, args + 1, nargs - 1, disk ? "iops" : "pps") == 0;
		snprintf(path, sizeof(path), "/v1/vm/%s/%s", disk ? "disks" : "nets",
		         ok ? args[0] : "");
	} else {
		log_error("ctl: unknown verb '%s' (see cvisor ctl --help)", verb);
		goto out;
	}
	if (!ok) {
		log_error("ctl: bad arguments for '%s' (see cvisor ctl --help)", verb);
		goto out;
	}

	const char *send = raw_body;
	if (json_object_object_length(body) > 0)
		send = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN);
	int r = api_client_request(sock, method, path, send, (int)timeout_s * 1000, &resp, err,
	                           sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		rc = EXIT_ERROR;
		goto out;
	}
	if (!strcmp(verb, "request")) {
		/* for scripts: the status first, then the body as it came */
		printf("HTTP %d\n", resp.status);
		fwrite(resp.body, 1, resp.len, stdout);
		rc = resp.status >= 200 && resp.status < 300 ? 0 : EXIT_ERROR;
	} else if (resp.status >= 200 && resp.status < 300) {
		ctl_print(&resp);
		rc = 0;
	} else {
		ctl_print_error(&resp);
		rc = EXIT_ERROR;
	}
	api_response_free(&resp);
out:
	json_object_put(body);
	return rc;
}
