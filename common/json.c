#include "common/json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"

#define BYTES_KEY "$bytes"
#define BYTES_KEY_LEN (sizeof(BYTES_KEY) - 1)

/* State of one JSON -> value conversion. path names the value being converted, as "$.a[2].b",
 * so that an error can say where it is. */
struct conv {
	struct laurel_msg *m;
	enum json_policy policy;
	struct buf path;
	char *err;
	size_t errlen;
};

/* Out of memory aborts in laurel, so jansson allocates through xmalloc and never sees NULL. */
static void use_xmalloc(void)
{
	json_set_alloc_funcs(xmalloc, free);
}

static int fail(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "not valid at PATH: why". */
static int fail(struct conv *c, const char *fmt, ...)
{
	if (c->errlen) {
		int n = snprintf(c->err, c->errlen, "not valid at %s: ", c->path.data);
		if (n >= 0 && (size_t)n < c->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static bool plain_key(const char *key, size_t len)
{
	if (len == 0 || (key[0] >= '0' && key[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (!(ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9')))
			return false;
	}
	return true;
}

/* Appends ".key", or ["key"] with quotes and control characters escaped when key is not a plain
 * identifier. */
static void path_push_key(struct buf *path, const char *key, size_t len)
{
	if (plain_key(key, len)) {
		buf_append_byte(path, '.');
		buf_append(path, key, len);
		return;
	}
	buf_append_str(path, "[\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)key[i];
		if (ch == '"' || ch == '\\')
			buf_printf(path, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			buf_printf(path, "\\u%04x", ch);
		else
			buf_append_byte(path, ch);
	}
	buf_append_str(path, "\"]");
}

static void path_truncate(struct buf *path, size_t len)
{
	path->len = len;
	path->data[len] = '\0';
}

static int from_json(struct conv *c, struct laurel_value *v, json_t *j, int depth);

static int bytes_from_json(struct conv *c, struct laurel_value *v, json_t *obj, json_t *b64)
{
	if (json_object_size(obj) != 1)
		return fail(c, "an object with a \"" BYTES_KEY "\" key must have no other key");
	if (!json_is_string(b64))
		return fail(c, "\"" BYTES_KEY "\" must be a base64 string");
	size_t len = json_string_length(b64), n = 0;
	char *bytes = xmalloc(len / 4 * 3 + 1);
	char why[160];
	int rc = util_base64_decode(json_string_value(b64), len, bytes, &n, why, sizeof(why));
	if (rc == 0)
		laurel_value_set_bytes(c->m, v, bytes, n);
	else
		fail(c, "\"" BYTES_KEY "\" is not base64: %s", why);
	free(bytes);
	return rc;
}

static int map_from_json(struct conv *c, struct laurel_value *v, json_t *obj, int depth)
{
	const char *key;
	size_t keylen;
	json_t *item;
	laurel_value_set_map(c->m, v, json_object_size(obj));
	json_object_keylen_foreach(obj, key, keylen, item)
	{
		size_t mark = c->path.len;
		path_push_key(&c->path, key, keylen);
		/* The slot stays valid while its own children are filled: only an insertion into
		 * v itself could move it. */
		struct laurel_value *slot = laurel_map_putn(c->m, v, key, keylen);
		int rc = from_json(c, slot, item, depth + 1);
		if (rc < 0)
			return rc;
		path_truncate(&c->path, mark);
	}
	return 0;
}

static int list_from_json(struct conv *c, struct laurel_value *v, json_t *arr, int depth)
{
	size_t i;
	json_t *item;
	laurel_value_set_list(c->m, v, json_array_size(arr));
	json_array_foreach(arr, i, item)
	{
		size_t mark = c->path.len;
		buf_printf(&c->path, "[%zu]", i);
		int rc = from_json(c, laurel_list_push(c->m, v), item, depth + 1);
		if (rc < 0)
			return rc;
		path_truncate(&c->path, mark);
	}
	return 0;
}

/* Converts j into v; depth is the nesting level j has if it is a list or a map. */
static int from_json(struct conv *c, struct laurel_value *v, json_t *j, int depth)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		json_t *b64 = c->policy == JSON_POLICY_LOSSY
				      ? json_object_getn(j, BYTES_KEY, BYTES_KEY_LEN)
				      : NULL;
		if (b64)
			return bytes_from_json(c, v, j, b64);
		if (depth > JSON_MAX_DEPTH)
			return fail(c, "lists and maps nest deeper than %d levels", JSON_MAX_DEPTH);
		return map_from_json(c, v, j, depth);
	}
	case JSON_ARRAY:
		if (depth > JSON_MAX_DEPTH)
			return fail(c, "lists and maps nest deeper than %d levels", JSON_MAX_DEPTH);
		return list_from_json(c, v, j, depth);
	case JSON_STRING:
		laurel_value_set_text(c->m, v, json_string_value(j), json_string_length(j));
		return 0;
	case JSON_INTEGER:
		laurel_value_set_int(v, (int64_t)json_integer_value(j));
		return 0;
	case JSON_REAL:
		laurel_value_set_double(v, json_real_value(j));
		return 0;
	case JSON_TRUE:
		laurel_value_set_bool(v, true);
		return 0;
	case JSON_FALSE:
		laurel_value_set_bool(v, false);
		return 0;
	case JSON_NULL:
		laurel_value_set_nil(v);
		return 0;
	}
	return fail(c, "unknown JSON type %d", (int)json_typeof(j));
}

int json_parse(const char *text, size_t len, enum json_policy policy, struct laurel_msg *m,
	       struct laurel_value *slot, char *err, size_t errlen)
{
	return json_parse_unique(text, len, policy, policy == JSON_POLICY_LOSSY, m, slot, err,
				 errlen);
}

int json_parse_unique(const char *text, size_t len, enum json_policy policy, bool unique,
		      struct laurel_msg *m, struct laurel_value *slot, char *err, size_t errlen)
{
	json_error_t jerr;
	size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
	if (unique)
		flags |= JSON_REJECT_DUPLICATES;
	use_xmalloc();
	laurel_value_set_nil(slot);
	json_t *root = json_loadb(text, len, flags, &jerr);
	if (!root) {
		if (errlen)
			snprintf(err, errlen, "not JSON: %s at line %d, column %d", jerr.text,
				 jerr.line, jerr.column);
		return -EINVAL;
	}
	struct conv c = {.m = m, .policy = policy, .err = err, .errlen = errlen};
	buf_init(&c.path);
	buf_append_str(&c.path, "$");
	int rc = from_json(&c, slot, root, 1);
	buf_fini(&c.path);
	json_decref(root);
	if (rc < 0)
		laurel_value_set_nil(slot);
	return rc;
}

/* The length of the valid UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF) at s[0..len), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c0 = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c0 < 0x80)
		return 1;
	if (c0 >= 0xc2 && c0 <= 0xdf)
		n = 2;
	else if (c0 >= 0xe0 && c0 <= 0xef)
		n = 3;
	else if (c0 >= 0xf0 && c0 <= 0xf4)
		n = 4;
	else
		return 0;
	if (c0 == 0xe0)
		lo = 0xa0;
	else if (c0 == 0xed)
		hi = 0x9f;
	else if (c0 == 0xf0)
		lo = 0x90;
	else if (c0 == 0xf4)
		hi = 0x8f;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* s[0..len) as valid UTF-8 in out: each byte that does not start a valid sequence becomes
 * U+FFFD. */
static void utf8_sanitize(const char *s, size_t len, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i);
		if (n) {
			buf_append(out, p + i, n);
			i += n;
		} else {
			buf_append(out, "\xef\xbf\xbd", 3);
			i++;
		}
	}
}

/* A JSON string of s[0..len), or NULL (JSON_POLICY_STRICT) when it is not UTF-8. */
static json_t *text_to_json(const char *s, size_t len, enum json_policy policy)
{
	json_t *j = json_stringn(s, len);
	if (j || policy == JSON_POLICY_STRICT)
		return j;
	struct buf clean;
	buf_init(&clean);
	utf8_sanitize(s, len, &clean);
	j = json_stringn(clean.len ? clean.data : "", clean.len);
	buf_fini(&clean);
	return j;
}

static json_t *bytes_to_json(const struct laurel_str *s)
{
	char *b64 = xmalloc((s->len + 2) / 3 * 4 + 1);
	util_base64_encode(s->ptr, s->len, b64);
	json_t *obj = json_object();
	json_object_set_new(obj, BYTES_KEY, json_string(b64));
	free(b64);
	return obj;
}

/* A new reference, or NULL for a value that has no JSON form under policy; depth counts the
 * outermost value 1. */
static json_t *to_json(const struct laurel_value *v, enum json_policy policy, int depth)
{
	json_t *j = NULL;
	if (depth > JSON_DUMP_MAX_DEPTH)
		return NULL;
	switch (v->type) {
	case LAUREL_NIL:
		return json_null();
	case LAUREL_BOOL:
		return json_boolean(v->u.b);
	case LAUREL_INT:
		return json_integer((json_int_t)v->u.i);
	case LAUREL_DOUBLE:
		if (isfinite(v->u.d))
			return json_real(v->u.d);
		return policy == JSON_POLICY_LOSSY ? json_null() : NULL;
	case LAUREL_TEXT:
		return text_to_json(v->u.s.ptr, v->u.s.len, policy);
	case LAUREL_BYTES:
		return policy == JSON_POLICY_LOSSY ? bytes_to_json(&v->u.s) : NULL;
	case LAUREL_LIST:
		j = json_array();
		for (size_t i = 0; i < v->u.list.len; i++) {
			json_t *x = to_json(&v->u.list.items[i], policy, depth + 1);
			if (!x || json_array_append_new(j, x)) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	case LAUREL_MAP:
		j = json_object();
		for (size_t i = 0; i < v->u.map.len; i++) {
			const struct laurel_entry *e = &v->u.map.items[i];
			json_t *key = text_to_json(e->key.ptr, e->key.len, policy);
			json_t *x = key ? to_json(&e->value, policy, depth + 1) : NULL;
			if (!x || json_object_setn_new(j, json_string_value(key),
						       json_string_length(key), x)) {
				json_decref(key);
				json_decref(j);
				return NULL;
			}
			json_decref(key);
		}
		return j;
	}
	return NULL;
}

int json_dump(const struct laurel_value *v, enum json_policy policy, const char *stream, char **out,
	      size_t *len)
{
	use_xmalloc();
	json_t *j = to_json(v, policy, 1);
	if (!j)
		return -EINVAL;
	if (stream) {
		json_t *s = text_to_json(stream, strlen(stream), policy);
		if (!s) {
			json_decref(j);
			return -EINVAL;
		}
		json_t *w = json_object();
		json_object_set_new(w, "stream", s);
		json_object_set_new(w, "payload", j);
		j = w;
	}
	char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	if (!text)
		return -EINVAL;
	*out = text;
	if (len)
		*len = strlen(text);
	return 0;
}
