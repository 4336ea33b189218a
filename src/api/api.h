/* The per-VM control API: HTTP/1.1 with JSON bodies on a Unix socket
 * (`cvisor run --api-socket PATH`), served by libmicrohttpd from the VMM's
 * main-thread event loop. docs/openapi.yaml describes every route.
 *
 * The server parses and validates every request completely before it calls the
 * VMM: a request that is malformed, has unknown fields, wrong types, values out
 * of range, a body over API_BODY_MAX, an unknown route or a wrong method is
 * answered with a 4xx and {"error": "..."} and never reaches the backend.
 *
 * The VMM side is a struct api_backend: a table of callbacks the server calls on
 * the main thread (inside evloop_run_once), one per action. Rules for all of
 * them:
 *  - return 0 on success or -errno; the status code sent is
 *      -EINVAL, -ERANGE, -ENODEV        400 (bad value; no such device kind)
 *      -ENOENT                          404 (no device with that id)
 *      -EALREADY, -EBUSY, -EEXIST,
 *      -EINPROGRESS                     409 (does not fit the VM's state)
 *      -ENOSYS, -EOPNOTSUPP             501
 *      -EAGAIN                          503
 *      anything else                    500
 *  - on failure, write one line for the user into err (at most errlen bytes,
 *    NUL-terminated); if err is left empty the server writes "<action>: <strerror>";
 *  - never block for long: the API shares the thread with every device backend.
 *    Waiting a bounded few milliseconds (vCPUs leaving KVM_RUN) is fine;
 *  - never destroy the VM or the server from inside a callback: request the
 *    exit and return; api_server_stop() runs later, outside the callback;
 *  - a NULL callback answers 501 "<action> is not implemented yet".
 */
#ifndef CVISOR_API_API_H
#define CVISOR_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct json_object;
struct sbuf;
struct vm_config;

#define API_BODY_MAX (64 * 1024)        /* larger request bodies get 413 */
#define API_INT_MAX ((1ULL << 53) - 1)  /* largest integer in a request (exact in any JSON) */
#define API_ID_MAX 64                   /* device ids: 1..64 of [A-Za-z0-9._-] */
#define API_PATH_MAX 4095               /* longest string value (snapshot path) */
#define API_ERR_MAX 256                 /* size of the err buffer backends get */
#define API_KEEP UINT64_MAX             /* in struct api_limits: leave unchanged */

/* PUT /v1/vm/migrate, validated: to is tcp:HOST:PORT, key_file NULL or an
 * absolute path, compress NULL, "none" or "zstd". */
struct api_migrate {
	const char *to;
	const char *key_file;        /* pre-shared key for HMAC-SHA256 on the stream */
	const char *compress;
	uint64_t max_bandwidth_mbps; /* MB/s (10^6 bytes/s); 0: no cap */
	uint64_t max_downtime_ms;    /* the switch-over budget; 0: the default (50 ms) */
	bool postcopy;               /* switch after one pass; pages follow on demand */
};

/* A live change of one device's rate limits (PATCH /v1/vm/disks|nets/{id}).
 * A field the request left out is API_KEEP; 0 means "no limit"; at least one
 * field is not API_KEEP; neither exceeds API_INT_MAX otherwise. */
struct api_limits {
	uint64_t bps; /* bytes per second (net: each direction) */
	uint64_t ops; /* disk: operations per second ("iops"); net: packets per second ("pps") */
};

struct api_backend {
	void *opaque; /* passed as the first argument of every callback */

	/* GET /v1/vm. out is an empty JSON object to fill (json-c; the server owns
	 * it). Required: "state": "running" | "paused" (else the reply is a 500).
	 * Expected, as docs/openapi.yaml describes them:
	 *   "name": string, "uptime_ms": integer (since this boot),
	 *   "config": object (api_config_json() builds it from the vm_config),
	 *   "devices": array of objects, each with "type" ("disk", "net", "rng",
	 *     "console", "balloon", "vsock") and "id" (what PATCH .../{id} takes;
	 *     suggested: the option's index among its kind, "0", "1" ...), plus what
	 *     fits the type: disks "path", "readonly", "bps", "iops"; nets "tap",
	 *     "mac", "bps", "pps"; balloon "target_mib", "actual_mib". */
	int (*info)(void *opaque, struct json_object *out, char *err, size_t errlen);
	/* PUT /v1/vm/pause: stop every vCPU and return once none is inside KVM_RUN
	 * (guest time frozen). -EALREADY if already paused (409). */
	int (*pause)(void *opaque, char *err, size_t errlen);
	/* PUT /v1/vm/resume: let the vCPUs run again. -EALREADY if running (409). */
	int (*resume)(void *opaque, char *err, size_t errlen);
	/* PUT /v1/vm/shutdown: press the ACPI power button (PM1 PWRBTN_STS + SCI)
	 * and return at once (answered 202); the guest shuts itself down and the
	 * VM exits with status 0 when it reaches S5. -EBUSY if the VM is paused. */
	int (*shutdown)(void *opaque, char *err, size_t errlen);
	/* PUT /v1/vm/stop: end the VM now, as SIGTERM does: request the exit and
	 * return 0; the main loop ends after this callback. Works when paused. */
	int (*stop)(void *opaque, char *err, size_t errlen);
	/* PUT /v1/vm/balloon: set the balloon target to target_mib MiB (0 deflates
	 * fully) and notify the guest. -ENODEV without a balloon device, -ERANGE
	 * above the guest's memory size. */
	int (*balloon)(void *opaque, uint64_t target_mib, char *err, size_t errlen);
	/* PATCH /v1/vm/disks/{id}: new token-bucket rates for disk id (bps, iops),
	 * applied at once, the bucket restarting full. -ENOENT for an unknown id. */
	int (*disk_limit)(void *opaque, const char *id, const struct api_limits *l, char *err,
	                  size_t errlen);
	/* PATCH /v1/vm/nets/{id}: the same for NIC id (bps, pps), both directions. */
	int (*net_limit)(void *opaque, const char *id, const struct api_limits *l, char *err,
	                 size_t errlen);
	/* GET /metrics: append samples in Prometheus text format 0.0.4 to text
	 * (api_prom_family/api_prom_sample). Expected families: vm exits by reason,
	 * vCPU time, per-device bytes/ops/errors, balloon size, rate-limiter
	 * throttling (names in docs/openapi.yaml). The server appends its own
	 * cvisor_api_* families. A failure answers 500. */
	int (*metrics)(void *opaque, struct sbuf *text);
	/* PUT /v1/vm/snapshot {"path": absolute DIR, "disk_overlay": bool}: save
	 * the VM to DIR; with disk_overlay, the disks' images are frozen with the
	 * snapshot and the VM goes on on new overlays (all or none). */
	int (*snapshot)(void *opaque, const char *path, bool disk_overlay, char *err,
	                size_t errlen);
	/* PUT /v1/vm/migrate {"to": "tcp:HOST:PORT", "key_file", "compress",
	 * "max_bandwidth_mbps"} (syntax already checked). -EINVAL for a key file
	 * that cannot be used. */
	int (*migrate)(void *opaque, const struct api_migrate *m, char *err, size_t errlen);
	/* PUT /v1/vm/migrate/cancel. -EALREADY (409) when no migration runs. */
	int (*migrate_cancel)(void *opaque, char *err, size_t errlen);
};

struct api_server;

/* Create the socket at path (a stale socket file is replaced; a live one, or
 * any other kind of file, is an error), mode 0600, and serve it from loop with
 * backend b (copied). 0, or -errno with one line in err. */
int api_server_start(struct evloop *loop, const char *path, const struct api_backend *b,
                     struct api_server **out, char *err, size_t errlen);
/* Remove the socket file, give answers being sent up to 200 ms (requests
 * arriving meanwhile get 503, never the backend), close everything, free s (NULL ok). */
void api_server_stop(struct api_server *s);
/* Take s out of its loop (before the loop is destroyed, e.g. on a guest reset);
 * clients wait in the socket's backlog until api_server_attach. */
void api_server_detach(struct api_server *s);
/* Serve s from loop with backend b (copied) again after api_server_detach;
 * requests that waited are answered at once, from inside this call. 0 or -errno. */
int api_server_attach(struct api_server *s, struct evloop *loop, const struct api_backend *b);
/* Serve an already connected stream socket (tests, fuzzing); takes fd. 0 or -errno. */
int api_server_add_connection(struct api_server *s, int fd);

/* A new JSON object describing cfg, for the "config" member of GET /v1/vm. NULL on ENOMEM. */
struct json_object *api_config_json(const struct vm_config *cfg);
/* Append the "# HELP" and "# TYPE" lines of a metric family (type: counter, gauge ...). */
void api_prom_family(struct sbuf *b, const char *name, const char *type, const char *help);
/* Append one sample line; labels is NULL or a NULL-terminated list of name, value
 * pairs (values are escaped). */
void api_prom_sample(struct sbuf *b, const char *name, const char *const *labels, uint64_t v);
/* Append one sample line with a non-integer value (seconds, ratios). */
void api_prom_sample_double(struct sbuf *b, const char *name, const char *const *labels, double v);

#endif
