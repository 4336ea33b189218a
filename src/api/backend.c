/* Helpers for the VMM's side of the API: the "config" object of GET /v1/vm
 * and Prometheus text format 0.0.4 lines for GET /metrics. */
#include "api/api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "state/sbuf.h"
#include "vm/config.h"

/* Add key: string (or null when s is NULL) to o. */
static void add_str(struct json_object *o, const char *key, const char *s)
{
	json_object_object_add(o, key, s ? json_object_new_string(s) : NULL);
}

static struct json_object *str_array(const char *const *v, unsigned n)
{
	struct json_object *a = json_object_new_array();
	for (unsigned i = 0; a && i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

struct json_object *api_config_json(const struct vm_config *cfg)
{
	char serial[16 + 4096];
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	switch (cfg->serial) {
	case SERIAL_STDIO:
		snprintf(serial, sizeof(serial), "stdio");
		break;
	case SERIAL_FILE:
		snprintf(serial, sizeof(serial), "file=%s", cfg->serial_path);
		break;
	case SERIAL_SOCKET:
		snprintf(serial, sizeof(serial), "socket=%s", cfg->serial_path);
		break;
	default:
		snprintf(serial, sizeof(serial), "none");
		break;
	}
	add_str(o, "name", cfg->name);
	add_str(o, "kernel", cfg->kernel);
	add_str(o, "initrd", cfg->initrd);
	add_str(o, "cmdline", cfg->cmdline);
	json_object_object_add(o, "cpus", json_object_new_int64(cfg->cpus));
	json_object_object_add(o, "memory_bytes", json_object_new_uint64(cfg->mem_size));
	add_str(o, "serial", serial);
	add_str(o, "console", cfg->console_virtio ? "virtio" : NULL);
	json_object_object_add(o, "disks", str_array(cfg->disks, cfg->nr_disks));
	json_object_object_add(o, "nets", str_array(cfg->nets, cfg->nr_nets));
	json_object_object_add(o, "rng", json_object_new_boolean(cfg->rng));
	json_object_object_add(o, "balloon", json_object_new_boolean(cfg->balloon));
	add_str(o, "vsock", cfg->vsock_opts);
	add_str(o, "on_reboot", cfg->on_reboot == ON_REBOOT_EXIT ? "exit" : "restart");
	add_str(o, "api_socket", cfg->api_socket);
	return o;
}

static void put_str(struct sbuf *b, const char *s)
{
	sbuf_put(b, s, strlen(s));
}

/* Append s escaped as the format wants: backslash and newline always,
 * double quotes inside label values. */
static void put_escaped(struct sbuf *b, const char *s, int quotes)
{
	for (; *s; s++) {
		if (*s == '\\')
			put_str(b, "\\\\");
		else if (*s == '\n')
			put_str(b, "\\n");
		else if (*s == '"' && quotes)
			put_str(b, "\\\"");
		else
			sbuf_put_u8(b, (uint8_t)*s);
	}
}

void api_prom_family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	put_str(b, "# HELP ");
	put_str(b, name);
	sbuf_put_u8(b, ' ');
	put_escaped(b, help, 0);
	put_str(b, "\n# TYPE ");
	put_str(b, name);
	sbuf_put_u8(b, ' ');
	put_str(b, type);
	sbuf_put_u8(b, '\n');
}

/* name{k="v",...} and the space before the value */
static void put_series(struct sbuf *b, const char *name, const char *const *labels)
{
	put_str(b, name);
	if (labels && labels[0]) {
		sbuf_put_u8(b, '{');
		for (int i = 0; labels[i] && labels[i + 1]; i += 2) {
			if (i)
				sbuf_put_u8(b, ',');
			put_str(b, labels[i]);
			put_str(b, "=\"");
			put_escaped(b, labels[i + 1], 1);
			sbuf_put_u8(b, '"');
		}
		sbuf_put_u8(b, '}');
	}
	sbuf_put_u8(b, ' ');
}

void api_prom_sample(struct sbuf *b, const char *name, const char *const *labels, uint64_t v)
{
	char num[24];

	put_series(b, name, labels);
	snprintf(num, sizeof(num), "%llu\n", (unsigned long long)v);
	put_str(b, num);
}

void api_prom_sample_double(struct sbuf *b, const char *name, const char *const *labels, double v)
{
	char num[40];

	put_series(b, name, labels);
	if (isnan(v))
		snprintf(num, sizeof(num), "NaN\n");
	else if (isinf(v))
		snprintf(num, sizeof(num), "%sInf\n", v > 0 ? "+" : "-");
	else
		snprintf(num, sizeof(num), "%.9g\n", v);
	put_str(b, num);
}
