/* docs/openapi.yaml against the server's route table (api_routes): every
 * route the server has is documented with its method, and the document
 * describes no route the server lacks. The YAML is read by indentation only:
 * under the top-level "paths:" key, a two-space key is a path and a four-space
 * key an HTTP method of it. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/route.h"

#define MAX_OPS 128

struct op {
	char method[128]; /* upper case */
	char path[128];
};

static struct op ops[MAX_OPS];
static int nops;
static char yaml[256 * 1024]; /* the whole file */

static bool is_method(const char *s)
{
	static const char *const m[] = { "get", "put", "post", "patch", "delete", "head",
		                          "options", "trace", NULL };
	for (int i = 0; m[i]; i++)
		if (!strcmp(s, m[i]))
			return true;
	return false;
}

/* The key of a "  key:" line at exactly `indent` spaces, unquoted; false if none. */
static bool key_at(const char *line, int indent, char *key, size_t keylen)
{
	for (int i = 0; i < indent; i++)
		if (line[i] != ' ')
			return false;
	const char *k = line + indent;
	if (*k == ' ' || *k == '#' || *k == '\0' || *k == '\n' || *k == '-')
		return false;
	const char *colon = strstr(k, ":");
	if (!colon)
		return false;
	/* "key:" alone on its line (a value after it is not a mapping key here) */
	const char *rest = colon + 1;
	while (*rest == ' ')
		rest++;
	if (*rest != '\n' && *rest != '\0' && *rest != '#')
		return false;
	size_t n = (size_t)(colon - k);
	if ((k[0] == '\'' || k[0] == '"') && n >= 2 && k[n - 1] == k[0]) {
		k++;
		n -= 2;
	}
	if (n + 1 > keylen)
		return false;
	memcpy(key, k, n);
	key[n] = '\0';
	return true;
}

static int load(void **state)
{
	char line[512], key[128], path[128] = "";
	bool in_paths = false;
	FILE *f = fopen(CVISOR_SOURCE_ROOT "/docs/openapi.yaml", "r");

	(void)state;
	if (!f) {
		fprintf(stderr, "cannot open docs/openapi.yaml\n");
		return -1;
	}
	nops = 0;
	size_t n = fread(yaml, 1, sizeof(yaml) - 1, f);
	yaml[n] = '\0';
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		if (line[0] != ' ' && line[0] != '\n' && line[0] != '#') {
			in_paths = !strncmp(line, "paths:", 6);
			continue;
		}
		if (!in_paths)
			continue;
		if (key_at(line, 2, key, sizeof(key))) {
			snprintf(path, sizeof(path), "%s", key);
		} else if (key_at(line, 4, key, sizeof(key)) && is_method(key) && path[0]) {
			if (nops == MAX_OPS)
				break;
			for (char *c = key; *c; c++)
				*c = (char)toupper((unsigned char)*c);
			snprintf(ops[nops].method, sizeof(ops[0].method), "%s", key);
			snprintf(ops[nops].path, sizeof(ops[0].path), "%s", path);
			nops++;
		}
	}
	fclose(f);
	return 0;
}

static bool documented(const char *method, const char *path)
{
	for (int i = 0; i < nops; i++)
		if (!strcmp(ops[i].method, method) && !strcmp(ops[i].path, path))
			return true;
	return false;
}

static bool routed(const char *method, const char *path)
{
	for (size_t i = 0; i < api_nr_routes; i++)
		if (!strcmp(api_routes[i].method, method) && !strcmp(api_routes[i].path, path))
			return true;
	return false;
}

static void test_every_route_documented(void **state)
{
	int missing = 0;

	(void)state;
	assert_true(api_nr_routes >= 12);
	for (size_t i = 0; i < api_nr_routes; i++) {
		if (!documented(api_routes[i].method, api_routes[i].path)) {
			fprintf(stderr, "not in docs/openapi.yaml: %s %s\n", api_routes[i].method,
			        api_routes[i].path);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

static void test_nothing_undocumented_extra(void **state)
{
	int extra = 0;

	(void)state;
	for (int i = 0; i < nops; i++) {
		if (!routed(ops[i].method, ops[i].path)) {
			fprintf(stderr, "docs/openapi.yaml describes a route the server lacks: %s %s\n",
			        ops[i].method, ops[i].path);
			extra++;
		}
	}
	assert_int_equal(extra, 0);
	assert_int_equal((size_t)nops, api_nr_routes);
}

/* The route table itself: methods HTTP knows, paths that start with '/',
 * no duplicate (method, path), a handler everywhere. */
static void test_route_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < api_nr_routes; i++) {
		const struct api_route *r = &api_routes[i];
		assert_non_null(r->handle);
		assert_non_null(r->action);
		assert_int_equal(r->path[0], '/');
		assert_true(!strcmp(r->method, "GET") || !strcmp(r->method, "PUT") ||
		            !strcmp(r->method, "PATCH"));
		for (size_t j = i + 1; j < api_nr_routes; j++)
			assert_false(!strcmp(r->method, api_routes[j].method) &&
			             !strcmp(r->path, api_routes[j].path));
		for (int k = 0; r->fields && r->fields[k].name; k++)
			assert_true(k < API_MAX_FIELDS);
	}
}

/* Every body field a route takes is a property in some schema. */
static void test_fields_documented(void **state)
{
	char needle[96];

	(void)state;
	for (size_t i = 0; i < api_nr_routes; i++) {
		for (int k = 0; api_routes[i].fields && api_routes[i].fields[k].name; k++) {
			snprintf(needle, sizeof(needle), "\n        %s:\n", api_routes[i].fields[k].name);
			if (!strstr(yaml, needle))
				fail_msg("field '%s' of %s %s is not in docs/openapi.yaml",
				         api_routes[i].fields[k].name, api_routes[i].method,
				         api_routes[i].path);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_route_documented),
		cmocka_unit_test(test_nothing_undocumented_extra),
		cmocka_unit_test(test_route_table),
		cmocka_unit_test(test_fields_documented),
	};
	return cmocka_run_group_tests(tests, load, NULL);
}
