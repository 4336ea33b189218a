/* Prometheus text merging. */
#include "daemon/promx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/sbuf.h"

struct promx_family {
	char *name;
	char *help; /* the whole "# HELP ..." line, or NULL */
	char *type; /* the whole "# TYPE ..." line, or NULL */
	struct sbuf samples;
};

struct promx {
	struct promx_family *fam;
	size_t nr, cap;
};

void promx_puts(struct sbuf *out, const char *s)
{
	sbuf_put(out, s, strlen(s));
}

void promx_printf(struct sbuf *out, const char *fmt, ...)
{
	char small[256], *big = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		sbuf_put(out, small, (size_t)n);
		return;
	}
	va_start(ap, fmt);
	n = vasprintf(&big, fmt, ap);
	va_end(ap);
	if (n < 0) {
		out->err = -ENOMEM;
		return;
	}
	sbuf_put(out, big, (size_t)n);
	free(big);
}

struct promx *promx_new(void)
{
	return calloc(1, sizeof(struct promx));
}

void promx_free(struct promx *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nr; i++) {
		free(p->fam[i].name);
		free(p->fam[i].help);
		free(p->fam[i].type);
		sbuf_free(&p->fam[i].samples);
	}
	free(p->fam);
	free(p);
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == ':';
}

static size_t name_len(const char *s, size_t len)
{
	size_t n = 0;

	while (n < len && name_char(s[n]))
		n++;
	return n;
}

static struct promx_family *family(struct promx *p, const char *name, size_t nlen)
{
	for (size_t i = 0; i < p->nr; i++) {
		if (strlen(p->fam[i].name) == nlen && !memcmp(p->fam[i].name, name, nlen))
			return &p->fam[i];
	}
	if (p->nr == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 32;
		struct promx_family *f = realloc(p->fam, cap * sizeof(*f));
		if (!f)
			return NULL;
		p->fam = f;
		p->cap = cap;
	}
	struct promx_family *f = &p->fam[p->nr];
	memset(f, 0, sizeof(*f));
	f->name = strndup(name, nlen);
	if (!f->name)
		return NULL;
	p->nr++;
	return f;
}

/* Whether a sample called [s, s+n) belongs to family f (histogram and
 * summary samples carry suffixes). */
static bool in_family(const struct promx_family *f, const char *s, size_t n)
{
	static const char *const suffixes[] = { "", "_bucket", "_sum", "_count", "_total",
		                                "_created", NULL };
	size_t fl = strlen(f->name);

	if (n < fl || memcmp(s, f->name, fl))
		return false;
	for (int i = 0; suffixes[i]; i++) {
		if (n - fl == strlen(suffixes[i]) && !memcmp(s + fl, suffixes[i], n - fl))
			return true;
	}
	return false;
}

static void put_escaped(struct sbuf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			promx_puts(out, "\\\\");
		else if (*v == '"')
			promx_puts(out, "\\\"");
		else if (*v == '\n')
			promx_puts(out, "\\n");
		else
			sbuf_put(out, v, 1);
	}
}

int promx_label_line(const char *line, size_t len, const char *label, const char *value,
                     struct sbuf *out)
{
	size_t n = name_len(line, len);

	if (n == 0 || n == len || (line[n] != '{' && line[n] != ' ' && line[n] != '\t'))
		return -EINVAL;
	sbuf_put(out, line, n);
	promx_puts(out, "{");
	promx_puts(out, label);
	promx_puts(out, "=\"");
	put_escaped(out, value);
	promx_puts(out, "\"");
	if (line[n] == '{') {
		n++;
		/* "{}" has nothing to follow our label; otherwise a comma does */
		if (n < len && line[n] != '}')
			promx_puts(out, ",");
		sbuf_put(out, line + n, len - n);
	} else {
		promx_puts(out, "}");
		sbuf_put(out, line + n, len - n);
	}
	promx_puts(out, "\n");
	return 0;
}

/* "# HELP name ..." or "# TYPE name ...": store the line with its family. */
static int add_comment(struct promx *p, const char *line, size_t len,
                       struct promx_family **cur)
{
	bool help = len > 7 && !memcmp(line, "# HELP ", 7);
	bool type = len > 7 && !memcmp(line, "# TYPE ", 7);

	if (!help && !type)
		return 0; /* other comments are dropped */
	size_t n = name_len(line + 7, len - 7);
	if (n == 0)
		return 0;
	struct promx_family *f = family(p, line + 7, n);
	if (!f)
		return -ENOMEM;
	char **slot = help ? &f->help : &f->type;
	if (!*slot) {
		*slot = strndup(line, len);
		if (!*slot)
			return -ENOMEM;
	}
	*cur = f;
	return 0;
}

int promx_add(struct promx *p, const char *text, size_t len, const char *label,
              const char *value)
{
	struct promx_family *cur = NULL;
	const char *end = text + len;

	while (text < end) {
		const char *nl = memchr(text, '\n', (size_t)(end - text));
		size_t l = nl ? (size_t)(nl - text) : (size_t)(end - text);
		const char *line = text;
		text += l + (nl ? 1 : 0);
		if (l && line[l - 1] == '\r')
			l--;
		if (l == 0)
			continue;
		if (line[0] == '#') {
			if (add_comment(p, line, l, &cur) < 0)
				return -ENOMEM;
			continue;
		}
		size_t n = name_len(line, l);
		if (n == 0)
			continue;
		struct promx_family *f = cur && in_family(cur, line, n) ? cur : family(p, line, n);
		if (!f)
			return -ENOMEM;
		if (promx_label_line(line, l, label, value, &f->samples) == 0 && f->samples.err)
			return -ENOMEM;
	}
	return 0;
}

void promx_render(const struct promx *p, struct sbuf *out)
{
	for (size_t i = 0; i < p->nr; i++) {
		const struct promx_family *f = &p->fam[i];
		if (!f->samples.len)
			continue;
		if (f->help) {
			promx_puts(out, f->help);
			promx_puts(out, "\n");
		}
		if (f->type) {
			promx_puts(out, f->type);
			promx_puts(out, "\n");
		}
		sbuf_put(out, f->samples.data, f->samples.len);
	}
}
