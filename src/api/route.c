/* API routes: match the path against the route table, validate the body
 * against the route's fields, and only then call the backend. Nothing here
 * knows about HTTP connections; the server (server.c) and the fuzz target feed
 * it (method, path, body) and send back what it fills in struct api_reply. */
#include "api/route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "state/sbuf.h"

#define JSON_TYPE "application/json"
#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define JSON_DEPTH 8      /* request bodies are flat objects; a little slack */
#define ECHO_MAX 80       /* longest piece of a request repeated in an error */
#define JSON_OUT (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

int api_status_from_errno(int rc)
{
	switch (-rc) {
	case EINVAL:
	case ERANGE:
	case ENODEV:
		return 400;
	case ENOENT:
		return 404;
	case EALREADY:
	case EBUSY:
	case EEXIST:
	case EINPROGRESS:
		return 409;
	case ENOSYS:
	case EOPNOTSUPP:
		return 501;
	case EAGAIN:
		return 503;
	default:
		return 500;
	}
}

void api_reply_free(struct api_reply *r)
{
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

/* Serialize o (consumed) as the reply body, with a final newline. */
static void reply_json(struct api_reply *r, int status, struct json_object *o)
{
	const char *s = o ? json_object_to_json_string_ext(o, JSON_OUT) : NULL;

	api_reply_free(r);
	r->status = status;
	r->content_type = JSON_TYPE;
	if (s) {
		size_t n = strlen(s);
		r->body = malloc(n + 2);
		if (r->body) {
			memcpy(r->body, s, n);
			r->body[n] = '\n';
			r->body[n + 1] = '\0';
			r->len = n + 1;
		}
	}
	json_object_put(o);
	if (!r->body)
		r->status = 500; /* out of memory: the server sends a fixed body */
}

void api_reply_error(struct api_reply *r, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct json_object *o = json_object_new_object();
	if (o && json_object_object_add(o, "error", json_object_new_string(msg)) < 0) {
		json_object_put(o);
		o = NULL;
	}
	reply_json(r, status, o);
}

/* A success answer with an empty object. */
static void reply_ok(struct api_reply *r, int status)
{
	reply_json(r, status, json_object_new_object());
}

/* Copy at most ECHO_MAX bytes of s for an error message, replacing anything
 * but printable ASCII: a request's bytes are echoed, never trusted. */
static const char *echo(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 4 < dstlen; i++) {
		if (k == ECHO_MAX) {
			memcpy(dst + k, "...", 3);
			k += 3;
			break;
		}
		unsigned char c = (unsigned char)s[i];
		dst[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[k] = '\0';
	return dst;
}

/* The outcome of a backend call: rc 0 answers ok_status and {}. */
static void reply_rc(const struct api_route *rt, struct api_reply *r, int rc, char *err,
                     int ok_status)
{
	err[API_ERR_MAX - 1] = '\0';
	if (rc == 0) {
		reply_ok(r, ok_status);
	} else if (rc > 0) {
		api_reply_error(r, 500, "%s: the VMM returned %d", rt->action, rc);
	} else if (err[0]) {
		api_reply_error(r, api_status_from_errno(rc), "%s", err);
	} else {
		api_reply_error(r, api_status_from_errno(rc), "%s: %s", rt->action, strerror(-rc));
	}
}

static void not_implemented(const struct api_route *rt, struct api_reply *r)
{
	api_reply_error(r, 501, "%s is not implemented yet", rt->action);
}

/* Handlers. Arguments are validated; a NULL callback answers 501. */

static void h_info(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";
	struct json_object *o, *st = NULL;

	if (!a->b->info) {
		not_implemented(rt, r);
		return;
	}
	o = json_object_new_object();
	if (!o) {
		api_reply_error(r, 500, "out of memory");
		return;
	}
	int rc = a->b->info(a->b->opaque, o, err, sizeof(err));
	if (rc) {
		json_object_put(o);
		reply_rc(rt, r, rc, err, 200);
		return;
	}
	json_object_object_get_ex(o, "state", &st);
	const char *s = json_object_is_type(st, json_type_string) ? json_object_get_string(st) : "";
	if (strcmp(s, "running") && strcmp(s, "paused")) {
		json_object_put(o);
		api_reply_error(r, 500, "the VMM reported no valid state");
		return;
	}
	reply_json(r, 200, o);
}

static void h_pause(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->pause)
		reply_rc(rt, r, a->b->pause(a->b->opaque, err, sizeof(err)), err, 200);
	else
		not_implemented(rt, r);
}

static void h_resume(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->resume)
		reply_rc(rt, r, a->b->resume(a->b->opaque, err, sizeof(err)), err, 200);
	else
		not_implemented(rt, r);
}

/* 202: the guest has been asked and shuts down in its own time */
static void h_shutdown(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->shutdown)
		reply_rc(rt, r, a->b->shutdown(a->b->opaque, err, sizeof(err)), err, 202);
	else
		not_implemented(rt, r);
}

static void h_stop(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->stop)
		reply_rc(rt, r, a->b->stop(a->b->opaque, err, sizeof(err)), err, 200);
	else
		not_implemented(rt, r);
}

static void h_balloon(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->balloon)
		reply_rc(rt, r, a->b->balloon(a->b->opaque, a->u64[0], err, sizeof(err)), err, 200);
	else
		not_implemented(rt, r);
}

/* Fields 0 and 1 of both PATCH routes: bytes/s and operations (or packets)/s. */
static struct api_limits limits_from(const struct api_args *a)
{
	struct api_limits l = {
		.bps = a->has[0] ? a->u64[0] : API_KEEP,
		.ops = a->has[1] ? a->u64[1] : API_KEEP,
	};
	return l;
}

static void h_disk_limit(const struct api_route *rt, const struct api_args *a,
                         struct api_reply *r)
{
	char err[API_ERR_MAX] = "";
	struct api_limits l = limits_from(a);

	if (!a->has[0] && !a->has[1])
		api_reply_error(r, 400, "nothing to change: give bps and/or iops");
	else if (!a->b->disk_limit)
		not_implemented(rt, r);
	else
		reply_rc(rt, r, a->b->disk_limit(a->b->opaque, a->id, &l, err, sizeof(err)), err,
		         200);
}

static void h_net_limit(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";
	struct api_limits l = limits_from(a);

	if (!a->has[0] && !a->has[1])
		api_reply_error(r, 400, "nothing to change: give bps and/or pps");
	else if (!a->b->net_limit)
		not_implemented(rt, r);
	else
		reply_rc(rt, r, a->b->net_limit(a->b->opaque, a->id, &l, err, sizeof(err)), err,
		         200);
}

/* The server's own metric family, after the VMM's. */
static void stats_metrics(const struct api_stats *st, struct sbuf *text)
{
	char code[8];

	api_prom_family(text, "cvisor_api_responses_total", "counter",
	                "API responses sent, by HTTP status code");
	for (int i = 0; st && i <= API_STATUS_MAX - API_STATUS_MIN; i++) {
		if (!st->responses[i])
			continue;
		snprintf(code, sizeof(code), "%d", i + API_STATUS_MIN);
		const char *labels[] = { "code", code, NULL };
		api_prom_sample(text, "cvisor_api_responses_total", labels, st->responses[i]);
	}
}

/* Without a metrics callback only the server's own families are sent. */
static void h_metrics(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	struct sbuf text = { 0 };

	int rc = a->b->metrics ? a->b->metrics(a->b->opaque, &text) : 0;
	if (rc == 0 && !text.err) {
		stats_metrics(a->stats, &text);
		sbuf_put_u8(&text, '\0');
	}
	if (rc || text.err) {
		int e = rc < 0 ? -rc : (text.err ? -text.err : EIO);
		sbuf_free(&text);
		api_reply_error(r, 500, "%s: %s", rt->action, strerror(e));
		return;
	}
	api_reply_free(r);
	r->status = 200;
	r->content_type = PROM_TYPE;
	r->body = (char *)text.data;
	r->len = text.len - 1;
}

static void h_snapshot(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->str[0][0] != '/')
		api_reply_error(r, 400, "'path' must be absolute (the VMM's directory is not yours)");
	else if (!a->b->snapshot)
		not_implemented(rt, r);
	else
		reply_rc(rt, r,
		         a->b->snapshot(a->b->opaque, a->str[0], a->has[1] && a->u64[1], err,
		                        sizeof(err)),
		         err, 200);
}

/* "tcp:HOST:PORT", HOST a name, an IPv4 address or a bracketed IPv6 address. */
static bool valid_tcp_uri(const char *s)
{
	if (strncmp(s, "tcp:", 4))
		return false;
	const char *host = s + 4, *colon = strrchr(host, ':');
	if (!colon || colon == host)
		return false;
	size_t hlen = (size_t)(colon - host);
	bool bracketed = host[0] == '[';
	if (bracketed && (hlen < 3 || host[hlen - 1] != ']'))
		return false;
	for (size_t i = bracketed; i < hlen - bracketed; i++) {
		char c = host[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		          c == '-' || c == '.' || (bracketed && c == ':');
		if (!ok)
			return false;
	}
	const char *port = colon + 1;
	size_t plen = strlen(port);
	if (plen < 1 || plen > 5 || strspn(port, "0123456789") != plen)
		return false;
	long p = strtol(port, NULL, 10);
	return p >= 1 && p <= 65535;
}

/* Fields: 0 to, 1 key_file, 2 compress, 3 max_bandwidth_mbps. */
static void h_migrate(const struct api_route *rt, const struct api_args *a, struct api_reply *r)
{
	char err[API_ERR_MAX] = "";
	struct api_migrate m = {
		.to = a->str[0],
		.key_file = a->has[1] ? a->str[1] : NULL,
		.compress = a->has[2] ? a->str[2] : NULL,
		.max_bandwidth_mbps = a->has[3] ? a->u64[3] : 0,
		.max_downtime_ms = a->has[4] ? a->u64[4] : 0,
		.postcopy = a->has[5] && a->u64[5],
	};

	if (!valid_tcp_uri(m.to))
		api_reply_error(r, 400, "'to' must look like tcp:HOST:PORT");
	else if (m.key_file && m.key_file[0] != '/')
		api_reply_error(r, 400, "'key_file' must be absolute (the VMM's directory is not yours)");
	else if (m.compress && strcmp(m.compress, "zstd") && strcmp(m.compress, "none"))
		api_reply_error(r, 400, "'compress' must be zstd or none");
	else if (a->has[4] && m.max_downtime_ms == 0)
		api_reply_error(r, 400, "'max_downtime_ms' must be 1 to 60000");
	else if (!a->b->migrate)
		not_implemented(rt, r);
	else
		reply_rc(rt, r, a->b->migrate(a->b->opaque, &m, err, sizeof(err)), err, 200);
}

static void h_migrate_cancel(const struct api_route *rt, const struct api_args *a,
                             struct api_reply *r)
{
	char err[API_ERR_MAX] = "";

	if (a->b->migrate_cancel)
		reply_rc(rt, r, a->b->migrate_cancel(a->b->opaque, err, sizeof(err)), err, 200);
	else
		not_implemented(rt, r);
}

static const struct api_field balloon_fields[] = {
	{ "target_mib", API_U64, true, API_INT_MAX },
	{ NULL },
};
static const struct api_field disk_fields[] = {
	{ "bps", API_U64, false, API_INT_MAX },
	{ "iops", API_U64, false, API_INT_MAX },
	{ NULL },
};
static const struct api_field net_fields[] = {
	{ "bps", API_U64, false, API_INT_MAX },
	{ "pps", API_U64, false, API_INT_MAX },
	{ NULL },
};
static const struct api_field snapshot_fields[] = {
	{ "path", API_STR, true, API_PATH_MAX },
	{ "disk_overlay", API_BOOL, false, 1 },
	{ NULL },
};
static const struct api_field migrate_fields[] = {
	{ "to", API_STR, true, 512 },
	{ "key_file", API_STR, false, API_PATH_MAX },
	{ "compress", API_STR, false, 16 },
	{ "max_bandwidth_mbps", API_U64, false, 100000 }, /* MIGRATE_MAX_BANDWIDTH_MBPS */
	{ "max_downtime_ms", API_U64, false, 60000 },
	{ "postcopy", API_BOOL, false, 1 },
	{ NULL },
};

const struct api_route api_routes[] = {
	{ "GET", "/v1/vm", "info", NULL, h_info },
	{ "PUT", "/v1/vm/pause", "pause", NULL, h_pause },
	{ "PUT", "/v1/vm/resume", "resume", NULL, h_resume },
	{ "PUT", "/v1/vm/shutdown", "shutdown", NULL, h_shutdown },
	{ "PUT", "/v1/vm/stop", "stop", NULL, h_stop },
	{ "PUT", "/v1/vm/balloon", "balloon", balloon_fields, h_balloon },
	{ "PATCH", "/v1/vm/disks/{id}", "disk limit", disk_fields, h_disk_limit },
	{ "PATCH", "/v1/vm/nets/{id}", "net limit", net_fields, h_net_limit },
	{ "GET", "/metrics", "metrics", NULL, h_metrics },
	{ "PUT", "/v1/vm/snapshot", "snapshot", snapshot_fields, h_snapshot },
	{ "PUT", "/v1/vm/migrate", "migrate", migrate_fields, h_migrate },
	{ "PUT", "/v1/vm/migrate/cancel", "migrate cancel", NULL, h_migrate_cancel },
};
const size_t api_nr_routes = sizeof(api_routes) / sizeof(api_routes[0]);

/* Does path fit the template? Each "{id}" matches one non-empty segment,
 * returned in id/idlen. */
static bool match(const char *tmpl, const char *path, const char **id, size_t *idlen)
{
	*id = NULL;
	*idlen = 0;
	while (*tmpl && *path) {
		if (*tmpl != '/' || *path != '/')
			return false;
		tmpl++;
		path++;
		size_t tl = strcspn(tmpl, "/"), pl = strcspn(path, "/");
		if (tl == 4 && !strncmp(tmpl, "{id}", 4)) {
			if (pl == 0)
				return false;
			*id = path;
			*idlen = pl;
		} else if (tl != pl || strncmp(tmpl, path, tl)) {
			return false;
		}
		tmpl += tl;
		path += pl;
	}
	return !*tmpl && !*path;
}

static bool valid_id(const char *s, size_t n)
{
	if (n < 1 || n > API_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Check one body member against the route's fields and store it in a. */
static int take_field(const struct api_route *rt, const char *key, struct json_object *v,
                      struct api_args *a, struct api_reply *r)
{
	char e[ECHO_MAX + 4];
	int i = 0;

	while (rt->fields && rt->fields[i].name && strcmp(rt->fields[i].name, key))
		i++;
	if (!rt->fields || !rt->fields[i].name) {
		api_reply_error(r, 400, "unknown field '%s'%s", echo(e, sizeof(e), key, strlen(key)),
		                rt->fields ? "" : " (this request takes no fields)");
		return -EINVAL;
	}
	const struct api_field *f = &rt->fields[i];
	if (f->kind == API_U64) {
		if (!json_object_is_type(v, json_type_int)) {
			api_reply_error(r, 400, "'%s' must be an integer", f->name);
			return -EINVAL;
		}
		if (json_object_get_int64(v) < 0) {
			api_reply_error(r, 400, "'%s' must not be negative", f->name);
			return -EINVAL;
		}
		uint64_t u = json_object_get_uint64(v);
		if (u > f->max) {
			api_reply_error(r, 400, "'%s' must be at most %llu", f->name,
			                (unsigned long long)f->max);
			return -EINVAL;
		}
		a->u64[i] = u;
	} else if (f->kind == API_BOOL) {
		if (!json_object_is_type(v, json_type_boolean)) {
			api_reply_error(r, 400, "'%s' must be true or false", f->name);
			return -EINVAL;
		}
		a->u64[i] = json_object_get_boolean(v) ? 1 : 0;
	} else {
		if (!json_object_is_type(v, json_type_string)) {
			api_reply_error(r, 400, "'%s' must be a string", f->name);
			return -EINVAL;
		}
		const char *s = json_object_get_string(v);
		size_t n = (size_t)json_object_get_string_len(v);
		if (n == 0) {
			api_reply_error(r, 400, "'%s' must not be empty", f->name);
			return -EINVAL;
		}
		if (n > f->max) {
			api_reply_error(r, 400, "'%s' is longer than %llu bytes", f->name,
			                (unsigned long long)f->max);
			return -EINVAL;
		}
		for (size_t k = 0; k < n; k++) {
			if ((unsigned char)s[k] < 0x20 || s[k] == 0x7f) {
				api_reply_error(r, 400, "'%s' must not contain control characters",
				                f->name);
				return -EINVAL;
			}
		}
		a->str[i] = s;
	}
	a->has[i] = true;
	return 0;
}

/* Parse and check the body; on success *root holds the parsed object (or NULL
 * for an empty body) until the handler is done with a's strings. */
static int parse_body(const struct api_route *rt, const char *body, size_t len,
                      struct api_args *a, struct json_object **root, struct api_reply *r)
{
	*root = NULL;
	if (len) {
		if (memchr(body, '\0', len)) {
			api_reply_error(r, 400, "malformed JSON: the body contains a NUL byte");
			return -EINVAL;
		}
		struct json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
		if (!tok) {
			api_reply_error(r, 500, "out of memory");
			return -ENOMEM;
		}
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
		enum json_tokener_error jerr = json_tokener_get_error(tok);
		size_t end = json_tokener_get_parse_end(tok);
		json_tokener_free(tok);
		if (!o || jerr != json_tokener_success) {
			json_object_put(o);
			if (jerr == json_tokener_continue || jerr == json_tokener_success)
				api_reply_error(r, 400, "malformed JSON: the body is not one complete "
				                        "JSON object");
			else
				api_reply_error(r, 400, "malformed JSON at byte %zu: %s", end,
				                json_tokener_error_desc(jerr));
			return -EINVAL;
		}
		if (!json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			api_reply_error(r, 400, "the body must be a JSON object");
			return -EINVAL;
		}
		*root = o;
		json_object_object_foreach(o, key, v)
		{
			if (take_field(rt, key, v, a, r) < 0)
				goto fail;
		}
	}
	for (int i = 0; rt->fields && rt->fields[i].name; i++) {
		if (rt->fields[i].required && !a->has[i]) {
			api_reply_error(r, 400, "missing field '%s'", rt->fields[i].name);
			goto fail;
		}
	}
	return 0;
fail:
	json_object_put(*root);
	*root = NULL;
	return -EINVAL;
}

void api_handle(const struct api_backend *b, const struct api_stats *stats, const char *method,
                const char *path, const char *body, size_t len, struct api_reply *r)
{
	char e[ECHO_MAX + 4], e2[ECHO_MAX + 4];
	const struct api_route *rt = NULL;
	const char *id = NULL;
	size_t idlen = 0;
	bool path_known = false;

	memset(r, 0, sizeof(*r));
	if (!body)
		len = 0;
	/* HEAD is GET without the body (the HTTP layer drops it) */
	const char *m = strcmp(method, "HEAD") ? method : "GET";
	for (size_t i = 0; i < api_nr_routes && !rt; i++) {
		if (!match(api_routes[i].path, path, &id, &idlen))
			continue;
		path_known = true;
		if (!strcmp(api_routes[i].method, m))
			rt = &api_routes[i];
	}
	if (!path_known) {
		api_reply_error(r, 404, "no route %s %s", echo(e, sizeof(e), method, strlen(method)),
		                echo(e2, sizeof(e2), path, strlen(path)));
		return;
	}
	if (!rt) {
		/* every path has one method today; list all in case that changes */
		for (size_t i = 0; i < api_nr_routes; i++) {
			if (!match(api_routes[i].path, path, &id, &idlen))
				continue;
			size_t n = strlen(r->allow);
			bool get = !strcmp(api_routes[i].method, "GET");
			snprintf(r->allow + n, sizeof(r->allow) - n, "%s%s%s", n ? ", " : "",
			         api_routes[i].method, get ? ", HEAD" : "");
		}
		api_reply_error(r, 405, "%s %s: method not allowed (allowed: %s)",
		                echo(e, sizeof(e), method, strlen(method)),
		                echo(e2, sizeof(e2), path, strlen(path)), r->allow);
		return;
	}
	struct api_args a = { .b = b, .stats = stats };
	char idbuf[API_ID_MAX + 1];
	if (id) {
		if (!valid_id(id, idlen)) {
			api_reply_error(r, 400, "device id '%s' is not 1 to %d of A-Z a-z 0-9 . _ -",
			                echo(e, sizeof(e), id, idlen), API_ID_MAX);
			return;
		}
		memcpy(idbuf, id, idlen);
		idbuf[idlen] = '\0';
		a.id = idbuf;
	}
	struct json_object *root;
	if (parse_body(rt, body, len, &a, &root, r) < 0)
		return;
	rt->handle(rt, &a, r);
	json_object_put(root);
}
