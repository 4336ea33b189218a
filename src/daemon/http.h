/* cvisord's HTTP/1.1 server on its Unix socket: small and self-contained
 * (the per-VM API server in src/api is bound to one VM's callbacks). One
 * request per connection (answers carry "Connection: close"), bodies up to
 * DHTTP_BODY_MAX with a Content-Length, no chunked requests; everything
 * non-blocking on the daemon's event loop. A request may ask to upgrade the
 * connection to a raw byte stream (the console). */
#ifndef CVISOR_DAEMON_HTTP_H
#define CVISOR_DAEMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DHTTP_HEAD_MAX 8192        /* request line and headers */
#define DHTTP_BODY_MAX (256 << 10) /* request body */
#define DHTTP_IDLE_MS 15000        /* a request must be complete by then */
#define DHTTP_MAX_CONNS 512

struct evloop;
struct json_object;
struct dhttp;
struct dhttp_conn;

/* A complete request as the handler sees it; valid during the call. */
struct dhttp_req {
	const char *method;
	const char *path;  /* without the query */
	const char *query; /* after '?', or "" */
	const char *body;  /* NUL-terminated ("" when none) */
	size_t len;
	const char *upgrade; /* the Upgrade header, or NULL */
};

/* The handler answers with exactly one dhttp_reply* or dhttp_upgrade call. */
typedef void (*dhttp_fn)(void *opaque, struct dhttp_conn *c, const struct dhttp_req *r);

/* Listen on the Unix socket at path (mode 0600; a stale socket is replaced)
 * and serve it from loop. 0, or -errno with one line in err. */
int dhttp_start(struct evloop *loop, const char *path, dhttp_fn fn, void *opaque,
                struct dhttp **out, char *err, size_t errlen);
/* Close every connection and the socket, remove the socket file, free h (NULL ok). */
void dhttp_stop(struct dhttp *h);
/* Close connections idle for longer than DHTTP_IDLE_MS. */
void dhttp_tick(struct dhttp *h, int64_t now_ms);
/* Answer with status and body (copied). */
void dhttp_reply(struct dhttp_conn *c, int status, const char *ctype, const void *body,
                 size_t len);
/* Answer with a JSON body; takes o (NULL answers 500 "out of memory"). */
void dhttp_reply_json(struct dhttp_conn *c, int status, struct json_object *o);
/* Answer with status and {"error": "<message>"}. */
void dhttp_reply_error(struct dhttp_conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Answer 101 Switching Protocols (Upgrade: proto) and hand the socket over:
 * *fd is the caller's from now on, and *extra (malloc'd, may be NULL) holds
 * bytes the client sent after the request. The connection object is gone
 * afterwards. 0 or -errno (then the connection is closed). */
int dhttp_upgrade(struct dhttp_conn *c, const char *proto, int *fd, char **extra,
                  size_t *extralen);

#endif
