/* Parsing of sizes ("512M", "2G") and bounded integers from the command line. */
#ifndef CVISOR_UTIL_SIZE_H
#define CVISOR_UTIL_SIZE_H

#include <stdint.h>

/* Parse "N[K|M|G|T]" (binary units; a bare number means MiB, as QEMU's -m does)
 * into bytes. Returns 0, or -EINVAL on syntax error, -ERANGE on overflow. */
int size_parse_mem(const char *s, uint64_t *out);
/* Parse a decimal unsigned integer with no trailing garbage. 0 or -EINVAL/-ERANGE. */
int size_parse_u64(const char *s, uint64_t *out);

#endif
