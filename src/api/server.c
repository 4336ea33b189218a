/* The API's HTTP server: libmicrohttpd in its external-epoll mode, driven by
 * the VMM's event loop. We create and bind the Unix socket ourselves and hand
 * it over with MHD_OPTION_LISTEN_SOCKET; MHD keeps all of its sockets in one
 * epoll set whose fd sits in our loop, and a timerfd wakes us when MHD asks to
 * run again by a deadline (idle timeouts, work it left pending). Every
 * connection is a non-blocking state machine inside MHD, so a client that
 * stalls mid-request holds only its own connection until the idle timeout.
 *
 * Per request MHD calls srv_access several times: once when the headers are
 * in, then once per piece of body, then once with no body to ask for the
 * answer. We collect the body up to API_BODY_MAX and hand the whole request to
 * api_handle (route.c). A Content-Length over the limit is answered 413 at
 * once. A chunked body can only be answered once it has ended (MHD cannot
 * queue an answer mid-body), so its excess is read and dropped, up to
 * SRV_DISCARD_MAX, after which the connection is closed. */
#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/route.h"
#include "util/log.h"
#include "vm/evloop.h"

#define SRV_BACKLOG 128
#define SRV_MAX_CONNS 256
#define SRV_IDLE_TIMEOUT_S 30         /* a silent connection is closed after this */
#define SRV_DISCARD_MAX (16u << 20)   /* chunked excess read before giving up */
#define SRV_CONN_MEMORY (64u << 10)   /* MHD's per-connection pool: headers and buffers */
#define SRV_FLUSH_MS 200              /* on stop, time given to answers still being sent */

static const char oom_body[] = "{\"error\": \"out of memory\"}\n";

struct api_server {
	struct evloop *loop; /* NULL while detached */
	struct api_backend b;
	struct MHD_Daemon *d;
	int mhd_fd;   /* MHD's epoll set (owned by MHD) */
	int timer_fd; /* MHD's deadlines */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* the socket file we made, so that stop removes only ours */
	ino_t ino;
	struct api_stats stats;
	bool closing; /* api_server_stop: answer 503, the backend may be gone */
};

/* One request's state between srv_access calls. */
struct srv_req {
	char *body;
	size_t len, cap;
	uint64_t seen; /* body bytes received, kept or not */
	bool too_large;
};

static void srv_log(void *cls, const char *fmt, va_list ap)
{
	char msg[256];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_debug("api: %s", msg);
}

static void srv_count(struct api_server *s, int status)
{
	if (status >= API_STATUS_MIN && status <= API_STATUS_MAX)
		s->stats.responses[status - API_STATUS_MIN]++;
}

/* Queue r's answer on c; takes r's body. */
static enum MHD_Result srv_queue(struct api_server *s, struct MHD_Connection *c,
                                 struct api_reply *r)
{
	struct MHD_Response *resp;

	if (r->body) {
		resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			api_reply_free(r);
		else
			r->body = NULL; /* MHD frees it with the response */
	} else {
		r->status = 500;
		r->content_type = "application/json";
		resp = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
		                                       MHD_RESPMEM_PERSISTENT);
	}
	if (!resp)
		return MHD_NO; /* closes the connection: nothing better to do without memory */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	if (r->allow[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		srv_count(s, r->status);
	return ret;
}

static enum MHD_Result srv_error(struct api_server *s, struct MHD_Connection *c, int status,
                                 const char *msg)
{
	struct api_reply r = { 0 };

	api_reply_error(&r, status, "%s", msg);
	return srv_queue(s, c, &r);
}

/* Append a piece of body, or only count it once the limit is passed. */
static int srv_body(struct srv_req *q, const char *data, size_t n)
{
	q->seen += n;
	if (q->too_large)
		return q->seen > SRV_DISCARD_MAX ? -EFBIG : 0;
	if (q->len + n > API_BODY_MAX) {
		q->too_large = true;
		free(q->body);
		q->body = NULL;
		q->len = q->cap = 0;
		return 0;
	}
	if (q->len + n > q->cap) {
		size_t cap = q->cap ? q->cap : 1024;
		while (cap < q->len + n)
			cap *= 2;
		char *p = realloc(q->body, cap);
		if (!p)
			return -ENOMEM;
		q->body = p;
		q->cap = cap;
	}
	memcpy(q->body + q->len, data, n);
	q->len += n;
	return 0;
}

static enum MHD_Result srv_access(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
	struct api_server *s = cls;
	struct srv_req *q = *req_cls;

	(void)version;
	if (s->closing)
		return srv_error(s, c, 503, "the VMM is exiting");
	if (!q) { /* headers are in */
		q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		*req_cls = q;
		const char *cl =
			MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > API_BODY_MAX) {
			char msg[64];
			snprintf(msg, sizeof(msg), "the body is larger than %d bytes", API_BODY_MAX);
			return srv_error(s, c, 413, msg);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		int rc = srv_body(q, upload, *upload_size);
		*upload_size = 0;
		return rc < 0 ? MHD_NO : MHD_YES;
	}
	/* the whole request is in */
	if (q->too_large) {
		char msg[64];
		snprintf(msg, sizeof(msg), "the body is larger than %d bytes", API_BODY_MAX);
		return srv_error(s, c, 413, msg);
	}
	if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, NULL, NULL) > 0)
		return srv_error(s, c, 400, "query parameters are not supported");
	struct api_reply r;
	api_handle(&s->b, &s->stats, method, url, q->body, q->len, &r);
	return srv_queue(s, c, &r);
}

/* Paths are taken as sent: no %-decoding, so no NUL or '/' can hide in a
 * segment, and nothing we route needs escaping. */
static size_t srv_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	(void)cls;
	(void)c;
	return strlen(s);
}

static void srv_done(void *cls, struct MHD_Connection *c, void **req_cls,
                     enum MHD_RequestTerminationCode why)
{
	struct srv_req *q = *req_cls;

	(void)cls;
	(void)c;
	(void)why;
	if (q) {
		free(q->body);
		free(q);
		*req_cls = NULL;
	}
}

/* Wake up when MHD wants to run again even without socket activity. */
static void srv_arm(struct api_server *s)
{
	struct itimerspec its = { 0 };
	MHD_UNSIGNED_LONG_LONG ms;

	if (MHD_get_timeout(s->d, &ms) == MHD_YES) {
		if (ms == 0) {
			its.it_value.tv_nsec = 1; /* now: it left work pending */
		} else {
			if (ms > 3600 * 1000ULL)
				ms = 3600 * 1000ULL;
			its.it_value.tv_sec = (time_t)(ms / 1000);
			its.it_value.tv_nsec = (long)(ms % 1000) * 1000000;
		}
	}
	timerfd_settime(s->timer_fd, 0, &its, NULL);
}

static void srv_run(struct api_server *s)
{
	MHD_run(s->d);
	srv_arm(s);
}

static void srv_mhd_ev(void *opaque, uint32_t events)
{
	(void)events;
	srv_run(opaque);
}

static void srv_timer_ev(void *opaque, uint32_t events)
{
	struct api_server *s = opaque;
	uint64_t n;

	(void)events;
	if (read(s->timer_fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: already read; nothing else can fail on a timerfd */
	}
	srv_run(s);
}

/* Bind a listening Unix socket at path, replacing a stale socket file. */
static int srv_listen(struct api_server *s, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "API socket path '%s' must be 1 to %zu bytes long", path,
		         sizeof(sa.sun_path) - 1);
		return -EINVAL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "API socket: %s", strerror(errno));
		return rc;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "API socket %s: the path exists and is not a socket",
			         path);
			rc = -EEXIST;
			goto fail;
		}
		/* a socket file: in use if someone accepts connections on it */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN) {
			snprintf(err, errlen, "API socket %s is in use by another process", path);
			rc = -EADDRINUSE;
			goto fail;
		}
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "API socket: %s", strerror(errno));
			return rc;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "API socket %s: cannot remove the stale socket: %s", path,
			         strerror(errno));
			goto fail;
		}
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "API socket %s: %s", path, strerror(errno));
		goto fail;
	}
	/* owner only; nobody can connect before listen() */
	if (chmod(path, 0600) < 0 || stat(path, &st) < 0 || listen(fd, SRV_BACKLOG) < 0) {
		rc = -errno;
		snprintf(err, errlen, "API socket %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	memcpy(s->path, path, strlen(path) + 1);
	return fd;
fail:
	close(fd);
	return rc;
}

/* Remove the socket file if it is still the one we created. */
static void srv_unlink(struct api_server *s)
{
	struct stat st;

	if (s->path[0] && lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	s->path[0] = '\0';
}

int api_server_attach(struct api_server *s, struct evloop *loop, const struct api_backend *b)
{
	int rc;

	if (s->loop)
		return -EBUSY;
	s->b = *b;
	rc = evloop_add(loop, s->mhd_fd, EPOLLIN, srv_mhd_ev, s);
	if (rc < 0)
		return rc;
	rc = evloop_add(loop, s->timer_fd, EPOLLIN, srv_timer_ev, s);
	if (rc < 0) {
		evloop_del(loop, s->mhd_fd);
		return rc;
	}
	s->loop = loop;
	srv_run(s); /* serve what queued up while detached */
	return 0;
}

void api_server_detach(struct api_server *s)
{
	if (!s || !s->loop)
		return;
	evloop_del(s->loop, s->mhd_fd);
	evloop_del(s->loop, s->timer_fd);
	s->loop = NULL;
	memset(&s->b, 0, sizeof(s->b));
}

int api_server_start(struct evloop *loop, const char *path, const struct api_backend *b,
                     struct api_server **out, char *err, size_t errlen)
{
	struct api_server *s = calloc(1, sizeof(*s));
	int fd, rc;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "API server: out of memory");
		return -ENOMEM;
	}
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->timer_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "API server: timerfd: %s", strerror(errno));
		free(s);
		return rc;
	}
	fd = srv_listen(s, path, err, errlen);
	if (fd < 0) {
		close(s->timer_fd);
		free(s);
		return fd;
	}
	/* MHD gets a duplicate: whether it closes the socket when it fails to
	 * start is not documented, so ours is closed exactly once either way */
	int mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	close(fd);
	if (mfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "API socket: %s", strerror(errno));
		goto fail;
	}
	s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, srv_access, s,
	                        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mfd,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SRV_MAX_CONNS,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SRV_IDLE_TIMEOUT_S,
	                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SRV_CONN_MEMORY,
	                        MHD_OPTION_NOTIFY_COMPLETED, srv_done, s,
	                        MHD_OPTION_EXTERNAL_LOGGER, srv_log, s,
	                        MHD_OPTION_UNESCAPE_CALLBACK, srv_unescape, s,
	                        /* the RFC's syntax, but no Host header needed: people type requests */
	                        MHD_OPTION_STRICT_FOR_CLIENT, 0,
	                        MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen, "API server: libmicrohttpd did not start");
		rc = -EIO;
		goto fail;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		snprintf(err, errlen, "API server: libmicrohttpd has no epoll set");
		rc = -EIO;
		goto fail;
	}
	s->mhd_fd = info->epoll_fd;
	rc = api_server_attach(s, loop, b);
	if (rc < 0) {
		snprintf(err, errlen, "API server: event loop: %s", strerror(-rc));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->d)
		api_server_stop(s);
	else {
		srv_unlink(s);
		close(s->timer_fd);
		free(s);
	}
	return rc;
}

int api_server_add_connection(struct api_server *s, int fd)
{
	struct sockaddr_un peer = { .sun_family = AF_UNIX };

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		close(fd);
		return -errno;
	}
	/* MHD closes fd on failure */
	if (MHD_add_connection(s->d, fd, (const struct sockaddr *)&peer, sizeof(sa_family_t)) !=
	    MHD_YES)
		return -EIO;
	if (s->loop)
		srv_run(s);
	return 0;
}

/* Give answers already queued (the one to "stop", say) a moment to leave. */
static void srv_flush(struct api_server *s)
{
	struct pollfd p = { .fd = s->mhd_fd, .events = POLLIN };

	for (int waited = 0; waited < SRV_FLUSH_MS; waited += 5) {
		MHD_run(s->d);
		const union MHD_DaemonInfo *i =
			MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!i || i->num_connections == 0)
			break;
		poll(&p, 1, 5);
	}
}

void api_server_stop(struct api_server *s)
{
	if (!s)
		return;
	srv_unlink(s); /* new clients get "no such file" at once */
	api_server_detach(s);
	s->closing = true;
	if (s->d) {
		/* take the listening socket back so that we close it exactly once */
		MHD_socket lfd = MHD_quiesce_daemon(s->d);
		if (lfd != MHD_INVALID_SOCKET)
			close(lfd);
		srv_flush(s);
		MHD_stop_daemon(s->d);
	}
	close(s->timer_fd);
	free(s);
}
