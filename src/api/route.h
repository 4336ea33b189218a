/* Routing and validation of API requests, independent of the HTTP server:
 * (method, path, body) in, (status, headers, JSON body) out. The route table is
 * exported so that tests can check docs/openapi.yaml against it. */
#ifndef CVISOR_API_ROUTE_H
#define CVISOR_API_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

#define API_STATUS_MIN 100
#define API_STATUS_MAX 599
#define API_MAX_FIELDS 6

/* Responses sent, by status code (for the cvisor_api_responses_total metric). */
struct api_stats {
	uint64_t responses[API_STATUS_MAX - API_STATUS_MIN + 1];
};

/* What to send back. body is malloc'd (NULL only when out of memory). */
struct api_reply {
	int status;
	const char *content_type; /* static string */
	char allow[32];           /* for 405: the Allow header, else "" */
	char *body;
	size_t len;
};

/* Kinds of body fields. */
enum api_kind {
	API_U64, /* a JSON integer in 0..max */
	API_STR, /* a JSON string of 1..max bytes, no control characters */
	API_BOOL, /* a JSON true or false (u64: 1 or 0; max unused) */
};

/* One field of a request body. */
struct api_field {
	const char *name;
	enum api_kind kind;
	bool required;
	uint64_t max; /* API_U64: largest value; API_STR: longest length */
};

/* A validated request, as handlers see it. */
struct api_args {
	const struct api_backend *b;
	const struct api_stats *stats;
	const char *id; /* the {id} path segment, validated, or NULL */
	bool has[API_MAX_FIELDS];
	uint64_t u64[API_MAX_FIELDS];   /* by field index */
	const char *str[API_MAX_FIELDS]; /* by field index; valid during the handler */
};

/* A route: an OpenAPI path template ({id} is one segment) and its handler. */
struct api_route {
	const char *method;
	const char *path;
	const char *action;              /* name in messages: "pause", "disk limit" ... */
	const struct api_field *fields;  /* body fields, ended by a NULL name; NULL: none */
	void (*handle)(const struct api_route *rt, const struct api_args *a, struct api_reply *r);
};

/* The route table. */
extern const struct api_route api_routes[];
/* Number of entries in api_routes. */
extern const size_t api_nr_routes;

/* Answer one request. path is the URL path without the query; body may be
 * NULL when len is 0. stats may be NULL. Never fails: every problem becomes a
 * status and an {"error": ...} body in r. */
void api_handle(const struct api_backend *b, const struct api_stats *stats, const char *method,
                const char *path, const char *body, size_t len, struct api_reply *r);
/* Fill r with status and {"error": msg} (printf-style). */
void api_reply_error(struct api_reply *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Free r's body. */
void api_reply_free(struct api_reply *r);
/* The status code for a backend's -errno (see api.h). */
int api_status_from_errno(int rc);

#endif
