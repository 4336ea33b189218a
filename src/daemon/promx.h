/* Merging Prometheus text (format 0.0.4) from many VMs into one page: each
 * VM's samples get a label (vm="NAME"), and samples of one metric family from
 * all VMs are put together under a single HELP and TYPE line, as the format
 * requires. */
#ifndef CVISOR_DAEMON_PROMX_H
#define CVISOR_DAEMON_PROMX_H

#include <stddef.h>

struct sbuf;
struct promx;

/* An empty set of families; NULL on ENOMEM. */
struct promx *promx_new(void);
/* Free it (NULL ok). */
void promx_free(struct promx *p);
/* Add the families and samples of text, with label="value" added to every
 * sample. Lines that are not comments or samples are skipped. 0 or -ENOMEM. */
int promx_add(struct promx *p, const char *text, size_t len, const char *label,
              const char *value);
/* Append every family: its HELP and TYPE lines once, then all its samples. */
void promx_render(const struct promx *p, struct sbuf *out);
/* Append the sample line [line, line+len) with label="value" added to out.
 * 0, or -EINVAL if it is not a sample line. */
int promx_label_line(const char *line, size_t len, const char *label, const char *value,
                     struct sbuf *out);
/* Append s to out. */
void promx_puts(struct sbuf *out, const char *s);
/* Append a printf-formatted string to out. */
void promx_printf(struct sbuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
