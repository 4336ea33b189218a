/* Client side of the per-VM API: one HTTP/1.1 request over the Unix socket
 * with plain sockets, and `cvisor ctl`, which wraps the routes for people and
 * scripts. */
#ifndef CVISOR_API_CLIENT_H
#define CVISOR_API_CLIENT_H

#include <stddef.h>

#define API_CLIENT_MAX_RESPONSE (16u << 20) /* larger answers are refused */

/* A parsed answer. */
struct api_response {
	int status;
	char *body; /* malloc'd, NUL-terminated (may contain NULs before len) */
	size_t len;
};

/* Send method path with body (NULL: none) to the API socket at sock and read
 * the answer, waiting at most timeout_ms (<= 0: forever). 0 with resp filled,
 * or -errno with one line in err. */
int api_client_request(const char *sock, const char *method, const char *path, const char *body,
                       int timeout_ms, struct api_response *resp, char *err, size_t errlen);
/* Parse a complete HTTP/1.x answer read until the server closed (Content-Length
 * or chunked). 0, or -EPROTO (malformed), -EAGAIN (incomplete), -ENOMEM. */
int api_client_parse(const char *buf, size_t len, struct api_response *resp);
/* Free resp's body. */
void api_response_free(struct api_response *resp);
/* `cvisor ctl` (argv[0] is "ctl"). Returns the exit status: 0 on a 2xx answer,
 * 1 on an error answer or no answer, 2 on bad usage. */
int api_ctl_main(int argc, char **argv);

#endif
