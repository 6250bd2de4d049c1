/*
 * config.c - struct crust_config from a JSON file (jansson parses it).
 *
 * One table maps each key to its field, type and range; the loader walks
 * the file's top-level object, so an unknown key or a value of the wrong
 * type is an error naming the key. jansson reports positions only for
 * syntax errors, so the line of a key (or of a list element) is found by
 * a lexical scan of the text jansson has already accepted. Strings and
 * contacts the file brings live in cfg->loaded until crust_config_release.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crust.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define CONFIG_MAX_CONTACTS 1024u

enum key_type { K_U16, K_U32, K_U64, K_UINT, K_BOOL, K_NOT_BOOL, K_STR, K_CONTACTS, K_LEVEL,
		K_GRACE, K_BEACON_PORT, K_ENDPOINT };

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	uint64_t min, max;
};

#define F(field) offsetof(struct crust_config, field)
#define MS_MAX 86400000u /* a day */
static const struct key keys[] = {
	{ "shards", K_UINT, F(shards), 0, 1024 },
	{ "pin_shards", K_BOOL, F(pin_shards), 0, 0 },
	{ "first_cpu", K_UINT, F(first_cpu), 0, 65535 },
	{ "tcp_port", K_U16, F(tcp_port), 0, 65535 },
	{ "rudp_port", K_U16, F(rudp_port), 0, 65535 },
	{ "rudp_cc", K_STR, F(rudp_cc), 0, 0 }, /* the name is checked by crust_service_new */
	{ "rudp_retry_pending", K_U32, F(rudp_retry_pending), 1, 1u << 20 },
	{ "bind_addr", K_STR, F(bind_addr), 0, 0 },
	{ "max_msg_size", K_U32, F(max_msg_size), 1, 1u << 30 },
	{ "max_send_queue", K_U32, F(max_send_queue), 1, UINT32_MAX },
	{ "handshake_timeout_ms", K_U32, F(handshake_timeout_ms), 1, MS_MAX },
	{ "frame_timeout_ms", K_U32, F(frame_timeout_ms), 1, MS_MAX },
	{ "connect_timeout_ms", K_U32, F(connect_timeout_ms), 1, MS_MAX },
	{ "rx_buffer_size", K_U32, F(rx_buffer_size), 4096, 1u << 24 },
	{ "rx_buffer_count", K_U32, F(rx_buffer_count), 1, 32768 },
	{ "tx_arena_size", K_U32, F(tx_arena_size), 1u << 16, 1u << 30 },
	{ "rx_held_limit", K_U64, F(rx_held_limit), 1, UINT64_MAX },
	{ "zerocopy_min", K_U32, F(zerocopy_min), 0, UINT32_MAX },
	{ "network_name", K_STR, F(network_name), 0, 0 },
	{ "identity_file", K_STR, F(identity_file), 0, 0 },
	{ "tracer", K_BOOL, F(tracer), 0, 0 },
	{ "keepalive_ms", K_U32, F(keepalive_ms), 1, MS_MAX },
	{ "idle_timeout_ms", K_U32, F(idle_timeout_ms), 1, MS_MAX },
	{ "provisional_grace_ms", K_GRACE, F(provisional_grace_ms), 0, MS_MAX },
	{ "max_rx_msgs_per_s", K_U32, F(max_rx_msgs_per_s), 0, 1u << 30 },
	{ "hs_rate_per_s", K_U32, F(hs_rate_per_s), 1, 1u << 24 },
	{ "hs_burst", K_U32, F(hs_burst), 1, 1u << 24 },
	{ "hs_max_pending", K_U32, F(hs_max_pending), 1, 1u << 24 },
	{ "hard_coded_contacts", K_CONTACTS, F(contacts), 0, CONFIG_MAX_CONTACTS },
	{ "cache_file", K_STR, F(cache_file), 0, 0 },
	{ "cache_max_entries", K_U32, F(cache_max_entries), 1, 4096 },
	{ "cache_max_failures", K_U32, F(cache_max_failures), 1, 1000 },
	{ "beacon", K_NOT_BOOL, F(no_beacon), 0, 0 },
	{ "pex", K_NOT_BOOL, F(no_pex), 0, 0 },
	{ "beacon_port", K_BEACON_PORT, F(beacon_port), 0, 65535 },
	{ "beacon_interval_ms", K_U32, F(beacon_interval_ms), 1000, MS_MAX },
	{ "bootstrap_parallel", K_U32, F(bootstrap_parallel), 1, 256 },
	{ "bootstrap_retry_min_ms", K_U32, F(bootstrap_retry_min_ms), 1, MS_MAX },
	{ "bootstrap_retry_max_ms", K_U32, F(bootstrap_retry_max_ms), 1, MS_MAX },
	{ "pex_interval_ms", K_U32, F(pex_interval_ms), 100, MS_MAX },
	{ "pex_max_endpoints", K_U32, F(pex_max_endpoints), 1, 64 },
	{ "auto_connect_max", K_U32, F(auto_connect_max), 1, 65536 },
	{ "rebind_interval_ms", K_U32, F(rebind_interval_ms), 0, MS_MAX },
	{ "log_level", K_LEVEL, F(log_level), 0, 0 },
	{ "coordinator", K_ENDPOINT, F(coordinator), 0, 0 },
	{ "coordinator_refresh_ms", K_U32, F(coordinator_refresh_ms), 1000, MS_MAX },
	{ "punch_timeout_ms", K_U32, F(punch_timeout_ms), 100, MS_MAX },
	{ "relay", K_NOT_BOOL, F(no_relay), 0, 0 },
	{ "tcp_punch", K_NOT_BOOL, F(no_tcp_punch), 0, 0 },
	{ "udp_punch", K_NOT_BOOL, F(no_udp_punch), 0, 0 },
	{ "port_mapping", K_STR, F(port_mapping), 0, 0 }, /* checked by crust_service_new */
	{ "port_mapping_lease_s", K_U32, F(port_mapping_lease_s), 1, 604800 },
};
#undef F

/* What a loaded file owns: one string per string key, and the contacts. */
struct loaded {
	char *strs[sizeof(keys) / sizeof(keys[0])];
	struct crust_endpoint *contacts;
};

struct load {
	const char *path;
	const char *text;
	char *why;
	size_t whylen;
};

/* --- where a key is: a lexical scan of text jansson already accepted ---------- */

struct scan {
	const char *p;
	int line;
};

static void skip_space(struct scan *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r') {
		if (*s->p == '\n')
			s->line++;
		s->p++;
	}
}

/* Past a string token (s->p at its opening quote); returns its raw content start. */
static const char *skip_string(struct scan *s, size_t *rawlen)
{
	const char *start = ++s->p;
	while (*s->p && *s->p != '"')
		s->p += (*s->p == '\\' && s->p[1]) ? 2 : 1;
	*rawlen = (size_t)(s->p - start);
	if (*s->p)
		s->p++;
	return start;
}

/* Past one value of any kind, counting lines. */
static void skip_value(struct scan *s)
{
	size_t n;
	skip_space(s);
	if (*s->p == '"') {
		skip_string(s, &n);
		return;
	}
	if (*s->p != '{' && *s->p != '[') {
		while (*s->p && !strchr(",}] \t\r\n", *s->p))
			s->p++;
		return;
	}
	int depth = 0;
	do {
		if (*s->p == '"') {
			skip_string(s, &n);
			continue;
		}
		if (*s->p == '{' || *s->p == '[')
			depth++;
		else if (*s->p == '}' || *s->p == ']')
			depth--;
		else if (*s->p == '\n')
			s->line++;
		s->p++;
	} while (*s->p && depth > 0);
}

/*
 * Line of top-level key (elem < 0) or of element elem of its array
 * value; 0 if not found (a key spelled with escapes).
 */
static int locate(const char *text, const char *key, int elem)
{
	struct scan s = { text, 1 };
	skip_space(&s);
	if (*s.p++ != '{')
		return 0;
	for (;;) {
		skip_space(&s);
		if (*s.p != '"')
			return 0;
		int key_line = s.line;
		size_t n;
		const char *k = skip_string(&s, &n);
		skip_space(&s);
		s.p++; /* ':' */
		skip_space(&s);
		bool hit = n == strlen(key) && !memcmp(k, key, n);
		if (hit && elem < 0)
			return key_line;
		if (hit && *s.p == '[') {
			s.p++;
			for (int i = 0;; i++) {
				skip_space(&s);
				if (i == elem)
					return s.line;
				skip_value(&s);
				skip_space(&s);
				if (*s.p++ != ',')
					return key_line;
			}
		}
		skip_value(&s);
		skip_space(&s);
		if (*s.p++ != ',')
			return 0;
	}
}

__attribute__((format(printf, 5, 6)))
static int fail(struct load *l, const char *key, int elem, int err, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = locate(l->text, key, elem);
	char where[32] = "";
	if (line > 0)
		snprintf(where, sizeof(where), "line %d: ", line);
	if (elem >= 0)
		snprintf(l->why, l->whylen, "config file %s: %skey \"%s\"[%d]: %s", l->path, where,
			 key, elem, msg);
	else
		snprintf(l->why, l->whylen, "config file %s: %skey \"%s\": %s", l->path, where, key,
			 msg);
	return err;
}

/* --- values ------------------------------------------------------------------- */

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number with a fraction";
	case JSON_TRUE:
	case JSON_FALSE: return "true/false";
	case JSON_NULL: return "null";
	}
	return "something else";
}

static int get_uint(struct load *l, const struct key *k, const json_t *v, uint64_t *out)
{
	json_int_t i = json_is_integer(v) ? json_integer_value(v) : -1;
	if (!json_is_integer(v) || i < 0 || (uint64_t)i < k->min || (uint64_t)i > k->max)
		return fail(l, k->name, -1, -EINVAL,
			    "expected an integer from %llu to %llu, got %s", (unsigned long long)k->min,
			    (unsigned long long)k->max,
			    json_is_integer(v) ? "one out of range" : type_name(v));
	*out = (uint64_t)i;
	return 0;
}

static int set_string(struct load *l, struct loaded *own, size_t slot, const struct key *k,
		      const json_t *v, struct crust_config *cfg)
{
	if (!json_is_string(v))
		return fail(l, k->name, -1, -EINVAL, "expected a string, got %s", type_name(v));
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return fail(l, k->name, -1, -EINVAL, "the string holds a NUL character");
	char *copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	free(own->strs[slot]);
	own->strs[slot] = copy;
	*(const char **)((char *)cfg + k->off) = copy;
	return 0;
}

static int set_contacts(struct load *l, struct loaded *own, const struct key *k, const json_t *v,
			struct crust_config *cfg)
{
	if (!json_is_array(v))
		return fail(l, k->name, -1, -EINVAL,
			    "expected a list of \"ADDR:PORT\" strings, got %s", type_name(v));
	size_t n = json_array_size(v);
	if (n > k->max)
		return fail(l, k->name, -1, -EINVAL, "at most %llu contacts, got %zu",
			    (unsigned long long)k->max, n);
	struct crust_endpoint *eps = calloc(n ? n : 1, sizeof(*eps));
	if (!eps)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(v, i);
		if (!json_is_string(e) || crust_endpoint_parse(json_string_value(e), &eps[i]) < 0) {
			free(eps);
			if (!json_is_string(e))
				return fail(l, k->name, (int)i, -EINVAL,
					    "expected an \"ADDR:PORT\" string, got %s", type_name(e));
			return fail(l, k->name, (int)i, -EINVAL,
				    "bad endpoint \"%s\" (want ADDR:PORT, [IPv6]:PORT, tcp://... or "
				    "rudp://...)", json_string_value(e));
		}
	}
	free(own->contacts);
	own->contacts = eps;
	cfg->contacts = eps;
	cfg->ncontacts = n;
	return 0;
}

static int set_level(struct load *l, const struct key *k, const json_t *v, struct crust_config *cfg)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	for (int i = 0; json_is_string(v) && i < 4; i++) {
		if (!strcmp(json_string_value(v), names[i])) {
			cfg->log_level = (enum crust_log_level)i;
			return 0;
		}
	}
	return fail(l, k->name, -1, -EINVAL,
		    "expected \"error\", \"warn\", \"info\" or \"debug\", got %s", type_name(v));
}

static int set_bool(struct load *l, const struct key *k, const json_t *v, struct crust_config *cfg)
{
	if (!json_is_boolean(v))
		return fail(l, k->name, -1, -EINVAL, "expected true or false, got %s", type_name(v));
	bool b = json_is_true(v);
	*(bool *)((char *)cfg + k->off) = k->type == K_NOT_BOOL ? !b : b;
	return 0;
}

static int set_number(struct load *l, const struct key *k, const json_t *v, struct crust_config *cfg)
{
	uint64_t u = 0;
	int err = get_uint(l, k, v, &u);
	if (err)
		return err;
	char *field = (char *)cfg + k->off;
	switch (k->type) {
	case K_U16: *(uint16_t *)field = (uint16_t)u; break;
	case K_U32: *(uint32_t *)field = (uint32_t)u; break;
	case K_U64: *(uint64_t *)field = u; break;
	case K_UINT: *(unsigned *)field = (unsigned)u; break;
	case K_GRACE: *(uint32_t *)field = u ? (uint32_t)u : UINT32_MAX; break; /* 0 = never */
	case K_BEACON_PORT:
		/* 0 turns the beacon off, as in the CLI */
		if (u)
			cfg->beacon_port = (uint16_t)u;
		else
			cfg->no_beacon = true;
		break;
	default: break;
	}
	return 0;
}

static int set_key(struct load *l, struct loaded *own, size_t i, const json_t *v,
		   struct crust_config *cfg)
{
	const struct key *k = &keys[i];
	switch (k->type) {
	case K_STR: return set_string(l, own, i, k, v, cfg);
	case K_ENDPOINT: {
		struct crust_endpoint ep;
		if (json_is_string(v) && crust_endpoint_parse(json_string_value(v), &ep) < 0)
			return fail(l, k->name, -1, -EINVAL,
				    "bad endpoint \"%s\" (want ADDR:PORT or [IPv6]:PORT)",
				    json_string_value(v));
		return set_string(l, own, i, k, v, cfg);
	}
	case K_CONTACTS: return set_contacts(l, own, k, v, cfg);
	case K_LEVEL: return set_level(l, k, v, cfg);
	case K_BOOL:
	case K_NOT_BOOL: return set_bool(l, k, v, cfg);
	default: return set_number(l, k, v, cfg);
	}
}

static int apply(struct load *l, const json_t *root, struct crust_config *cfg)
{
	if (!json_is_object(root)) {
		snprintf(l->why, l->whylen, "config file %s: expected a JSON object {...}, got %s",
			 l->path, type_name(root));
		return -EINVAL;
	}
	struct loaded *own = cfg->loaded;
	if (!own) {
		own = calloc(1, sizeof(*own));
		if (!own)
			return -ENOMEM;
		cfg->loaded = own;
	}
	const char *name;
	json_t *v;
	json_object_foreach((json_t *)root, name, v) {
		size_t i = 0;
		while (i < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[i].name, name))
			i++;
		if (i == sizeof(keys) / sizeof(keys[0]))
			return fail(l, name, -1, -EINVAL, "unknown key (docs/CONFIG.md lists the keys)");
		int err = set_key(l, own, i, v, cfg);
		if (err)
			return err;
	}
	return 0;
}

/* The whole file as a NUL-terminated string; -errno with why set. */
static int read_text(struct load *l, char **out)
{
	int fd = open(l->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int err = fstat(fd, &st) < 0 ? -errno : 0;
	if (!err && S_ISDIR(st.st_mode))
		err = -EISDIR;
	if (!err && st.st_size > (off_t)CONFIG_MAX_BYTES)
		err = -EFBIG;
	char *text = err ? NULL : malloc((size_t)st.st_size + 1);
	if (!err && !text)
		err = -ENOMEM;
	size_t got = 0;
	while (!err && got < (size_t)st.st_size) {
		ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			err = r < 0 ? -errno : -EIO;
		else
			got += (size_t)r;
	}
	close(fd);
	if (err) {
		free(text);
		snprintf(l->why, l->whylen, "config file %s: %s", l->path,
			 err == -EFBIG ? "larger than 1 MiB" : strerror(-err));
		return err;
	}
	text[got] = 0;
	*out = text;
	return 0;
}

CRUST_API int crust_config_load(struct crust_config *cfg, const char *path, char *why,
				size_t whylen)
{
	char dummy[8];
	struct load l = { path, NULL, why ? why : dummy, why ? whylen : sizeof(dummy) };
	l.why[0] = 0;
	if (!cfg || !path)
		return -EINVAL;
	char *text = NULL;
	int err = read_text(&l, &text);
	if (err == -ENOENT)
		snprintf(l.why, l.whylen, "config file %s: not found (using the defaults)", path);
	if (err)
		return err;
	l.text = text;
	json_error_t jerr;
	json_t *root = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, &jerr);
	if (!root && json_error_code(&jerr) == json_error_out_of_memory) {
		/* jansson files its own allocation failure as a parse error: not the file's fault */
		snprintf(l.why, l.whylen, "config file %s: out of memory while parsing", path);
		free(text);
		return -ENOMEM;
	}
	if (!root) {
		snprintf(l.why, l.whylen, "config file %s: invalid JSON at line %d, column %d: %s",
			 path, jerr.line, jerr.column, jerr.text);
		free(text);
		return -EINVAL;
	}
	err = apply(&l, root, cfg);
	json_decref(root);
	free(text);
	return err;
}

CRUST_API void crust_config_release(struct crust_config *cfg)
{
	struct loaded *own = cfg ? cfg->loaded : NULL;
	if (!own)
		return;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!own->strs[i])
			continue;
		const char **field = (const char **)((char *)cfg + keys[i].off);
		if (*field == own->strs[i])
			*field = NULL;
		free(own->strs[i]);
	}
	if (cfg->contacts == own->contacts) {
		cfg->contacts = NULL;
		cfg->ncontacts = 0;
	}
	free(own->contacts);
	free(own);
	cfg->loaded = NULL;
}
