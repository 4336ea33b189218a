/* The daemon's HTTP server. Each connection reads one request into a buffer
 * (head up to DHTTP_HEAD_MAX, then Content-Length bytes of body), calls the
 * handler once, writes the answer and closes. A malformed request gets its
 * 4xx here and never reaches the handler. */
#include "daemon/http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "daemon/dlog.h"
#include "daemon/proc.h"
#include "vm/evloop.h"

struct dhttp_conn {
	struct dhttp *h;
	struct dhttp_conn *prev, *next;
	int fd;
	char *in;        /* request bytes, NUL-terminated */
	size_t len, cap;
	size_t head_len; /* bytes of request line and headers, 0 until all are in */
	size_t body_len; /* Content-Length */
	bool continued;  /* "100 Continue" sent */
	char *out;       /* the answer */
	size_t out_len, out_off;
	bool answered;
	int64_t since_ms;
};

struct dhttp {
	struct evloop *loop;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dhttp_fn fn;
	void *opaque;
	struct dhttp_conn *conns;
	unsigned nr_conns;
};

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

static void conn_close(struct dhttp_conn *c)
{
	struct dhttp *h = c->h;

	if (c->fd >= 0) {
		evloop_del(h->loop, c->fd);
		close(c->fd);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nr_conns--;
	free(c->in);
	free(c->out);
	free(c);
}

/* Send what is left of the answer; close when all went out. */
static void conn_flush(struct dhttp_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			evloop_mod(c->h->loop, c->fd, EPOLLOUT);
			return;
		} else {
			break; /* the client went away */
		}
	}
	conn_close(c);
}

void dhttp_reply(struct dhttp_conn *c, int status, const char *ctype, const void *body,
                 size_t len)
{
	char head[256];
	int n;

	if (c->answered)
		return;
	c->answered = true;
	n = snprintf(head, sizeof(head),
	             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n",
	             status, reason(status), ctype, len);
	c->out = malloc((size_t)n + len);
	if (!c->out) {
		conn_close(c);
		return;
	}
	memcpy(c->out, head, (size_t)n);
	if (len)
		memcpy(c->out + n, body, len);
	c->out_len = (size_t)n + len;
	c->out_off = 0;
	conn_flush(c);
}

void dhttp_reply_json(struct dhttp_conn *c, int status, struct json_object *o)
{
	if (!o) {
		static const char oom[] = "{\"error\": \"out of memory\"}\n";
		dhttp_reply(c, 500, "application/json", oom, sizeof(oom) - 1);
		return;
	}
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s);
	char *text = malloc(len + 2);
	if (text) {
		memcpy(text, s, len);
		text[len++] = '\n';
		dhttp_reply(c, status, "application/json", text, len);
		free(text);
	} else {
		dhttp_reply_json(c, 500, NULL);
	}
	json_object_put(o);
}

void dhttp_reply_error(struct dhttp_conn *c, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	struct json_object *o = json_object_new_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o)
		json_object_object_add(o, "error", json_object_new_string(msg));
	dhttp_reply_json(c, status, o);
}

int dhttp_upgrade(struct dhttp_conn *c, const char *proto, int *fd, char **extra,
                  size_t *extralen)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
	                 "Connection: Upgrade\r\n\r\n",
	                 proto);
	size_t rest = c->len - c->head_len - c->body_len;

	c->answered = true;
	*extra = NULL;
	*extralen = 0;
	/* a fresh socket has room for a few hundred bytes */
	if (send(c->fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
		int rc = errno ? -errno : -EIO;
		conn_close(c);
		return rc;
	}
	if (rest) {
		*extra = malloc(rest);
		if (*extra) {
			memcpy(*extra, c->in + c->head_len + c->body_len, rest);
			*extralen = rest;
		}
	}
	evloop_del(c->h->loop, c->fd);
	*fd = c->fd;
	c->fd = -1;
	conn_close(c);
	return 0;
}

/* Parse the head (a NUL-terminated copy of the request line and headers,
 * which is modified: NULs end the tokens) and fill r with pointers into it. On
 * a bad request answer it (c is then gone) and return -1. */
static int parse_head(struct dhttp_conn *c, char *head, struct dhttp_req *r)
{
	char *p = head, *eol = strstr(p, "\r\n");
	bool has_len = false;
	uint64_t clen = 0;

	memset(r, 0, sizeof(*r));
	/* METHOD SP TARGET SP HTTP/1.x */
	char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == p || sp1 - p > 7 || sp2 == sp1 + 1) {
		dhttp_reply_error(c, 400, "malformed request line");
		return -1;
	}
	if ((size_t)(eol - sp2 - 1) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) ||
	    (sp2[8] != '0' && sp2[8] != '1')) {
		dhttp_reply_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
		return -1;
	}
	*sp1 = *sp2 = '\0';
	for (char *m = p; *m; m++) {
		if (*m < 'A' || *m > 'Z') {
			dhttp_reply_error(c, 400, "malformed method");
			return -1;
		}
	}
	r->method = p;
	r->path = sp1 + 1;
	if (r->path[0] != '/') {
		dhttp_reply_error(c, 400, "the request target must be an absolute path");
		return -1;
	}
	if (strlen(r->path) > 1024) {
		dhttp_reply_error(c, 414, "request target too long");
		return -1;
	}
	for (const char *t = r->path; *t; t++) {
		if ((unsigned char)*t <= 0x20 || *t == 0x7f) {
			dhttp_reply_error(c, 400, "control characters in the request target");
			return -1;
		}
	}
	char *q = strchr(sp1 + 1, '?');
	r->query = "";
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	/* headers */
	for (p = eol + 2; p < head + c->head_len - 2; p = eol + 2) {
		eol = strstr(p, "\r\n");
		*eol = '\0';
		char *colon = strchr(p, ':');
		if (!colon || colon == p || memchr(p, ' ', (size_t)(colon - p)) ||
		    memchr(p, '\t', (size_t)(colon - p))) {
			dhttp_reply_error(c, 400, "malformed header line");
			return -1;
		}
		*colon = '\0';
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strlen(v);
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			v[--vl] = '\0';
		if (!strcasecmp(p, "Content-Length")) {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(v, &end, 10);
			if (!*v || *v < '0' || *v > '9' || *end || errno || (has_len && n != clen)) {
				dhttp_reply_error(c, 400, "bad Content-Length");
				return -1;
			}
			has_len = true;
			clen = n;
		} else if (!strcasecmp(p, "Transfer-Encoding")) {
			dhttp_reply_error(c, 501, "request bodies must come with a Content-Length");
			return -1;
		} else if (!strcasecmp(p, "Upgrade")) {
			r->upgrade = v;
		}
	}
	if (clen > DHTTP_BODY_MAX) {
		dhttp_reply_error(c, 413, "request body over %d bytes", DHTTP_BODY_MAX);
		return -1;
	}
	c->body_len = (size_t)clen;
	return 0;
}

/* Handle the request once it is complete (eof: no more bytes will come). c
 * may be gone when this returns. */
static void conn_request(struct dhttp_conn *c, bool eof)
{
	struct dhttp_req r;
	char *head = strndup(c->in, c->head_len), *body;

	if (!head) {
		dhttp_reply_json(c, 500, NULL);
		return;
	}
	if (parse_head(c, head, &r) < 0) {
		free(head);
		return;
	}
	if (c->len < c->head_len + c->body_len) {
		free(head);
		if (eof) /* the head promised more body than ever came */
			dhttp_reply_error(c, 400, "request body shorter than its Content-Length");
		return;
	}
	/* the body as a NUL-terminated string of its own */
	body = malloc(c->body_len + 1);
	if (!body) {
		free(head);
		dhttp_reply_json(c, 500, NULL);
		return;
	}
	memcpy(body, c->in + c->head_len, c->body_len);
	body[c->body_len] = '\0';
	r.body = body;
	r.len = c->body_len;
	c->h->fn(c->h->opaque, c, &r);
	free(body);
	free(head);
}

static void conn_ev(void *opaque, uint32_t events)
{
	struct dhttp_conn *c = opaque;
	bool eof = false;

	if (c->answered) { /* writing the answer */
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_flush(c);
		return;
	}
	for (;;) {
		if (c->len + 1 >= c->cap) {
			size_t limit = DHTTP_HEAD_MAX + DHTTP_BODY_MAX + 1;
			if (c->cap >= limit) {
				dhttp_reply_error(c, 413, "request too large");
				return;
			}
			size_t cap = c->cap * 2 > limit ? limit : c->cap * 2;
			char *p = realloc(c->in, cap);
			if (!p) {
				conn_close(c);
				return;
			}
			c->in = p;
			c->cap = cap;
		}
		ssize_t n = recv(c->fd, c->in + c->len, c->cap - c->len - 1, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			conn_close(c);
			return;
		}
		if (n == 0) {
			eof = true; /* a client may half-close after its request */
			break;
		}
		c->len += (size_t)n;
		c->in[c->len] = '\0';
	}
	if (!c->head_len) {
		char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
		if (!end) {
			if (c->len > DHTTP_HEAD_MAX)
				dhttp_reply_error(c, 431, "request head over %d bytes", DHTTP_HEAD_MAX);
			else if (eof)
				conn_close(c); /* closed before the request was complete */
			return;
		}
		if ((size_t)(end - c->in) + 4 > DHTTP_HEAD_MAX) {
			dhttp_reply_error(c, 431, "request head over %d bytes", DHTTP_HEAD_MAX);
			return;
		}
		if (memchr(c->in, '\0', (size_t)(end - c->in))) {
			dhttp_reply_error(c, 400, "NUL byte in the request head");
			return;
		}
		c->head_len = (size_t)(end - c->in) + 4;
		/* curl and friends wait for this before a larger body */
		if (!c->continued && strcasestr(c->in, "\r\nExpect: 100-continue") &&
		    strcasestr(c->in, "\r\nExpect: 100-continue") < end) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			c->continued = true;
			if (send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
				/* the client will send the body anyway after its timeout */
			}
		}
	}
	conn_request(c, eof);
}

static void accept_ev(void *opaque, uint32_t events)
{
	struct dhttp *h = opaque;

	(void)events;
	for (;;) {
		int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				dlog_warn("accept on %s: %s", h->path, strerror(errno));
			return;
		}
		if (h->nr_conns >= DHTTP_MAX_CONNS) {
			dlog_warn("%s: too many connections, refusing one", h->path);
			close(fd);
			continue;
		}
		struct dhttp_conn *c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(1024);
		if (!c || !c->in) {
			if (c)
				free(c);
			close(fd);
			continue;
		}
		c->h = h;
		c->fd = fd;
		c->cap = 1024;
		c->since_ms = vmproc_now_ms();
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->nr_conns++;
		if (evloop_add(h->loop, fd, EPOLLIN, conn_ev, c) < 0) {
			c->fd = -1;
			close(fd);
			conn_close(c);
		}
	}
}

int dhttp_start(struct evloop *loop, const char *path, dhttp_fn fn, void *opaque,
                struct dhttp **out, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct dhttp *h;
	struct stat st;
	int rc;

	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long (at most %zu bytes)", path,
		         sizeof(a.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	/* the caller holds the state directory's lock: a socket here is stale */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	strcpy(a.sun_path, path);
	snprintf(h->path, sizeof(h->path), "%s", path);
	h->loop = loop;
	h->fn = fn;
	h->opaque = opaque;
	h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177);
	rc = h->fd < 0 ? -1 : bind(h->fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc < 0 || listen(h->fd, 128) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		goto fail;
	}
	rc = evloop_add(loop, h->fd, EPOLLIN, accept_ev, h);
	if (rc < 0) {
		snprintf(err, errlen, "event loop: %s", strerror(-rc));
		unlink(path);
		goto fail;
	}
	*out = h;
	return 0;
fail:
	if (h->fd >= 0)
		close(h->fd);
	free(h);
	return rc;
}

void dhttp_stop(struct dhttp *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_close(h->conns);
	evloop_del(h->loop, h->fd);
	close(h->fd);
	unlink(h->path);
	free(h);
}

void dhttp_tick(struct dhttp *h, int64_t now_ms)
{
	struct dhttp_conn *c = h->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (now_ms - c->since_ms < DHTTP_IDLE_MS)
			continue;
		if (c->answered)
			conn_close(c); /* a client that does not read its answer */
		else
			dhttp_reply_error(c, 408, "request not complete after %d s",
			                  DHTTP_IDLE_MS / 1000);
	}
}
