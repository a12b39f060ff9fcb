#include "common/json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"

#define BYTES_KEY "$bytes"
#define BYTES_KEY_LEN (sizeof(BYTES_KEY) - 1)

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* State of one JSON -> message conversion. path names the value being converted, as
 * "$.a[2].b", so that an error can say where it is. */
struct conv {
	struct laurel_msg *m;
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

static int fail(struct conv *c, const char *fmt, ...)
{
	if (c->errlen) {
		int n = snprintf(c->err, c->errlen, "bad message at %s: ", c->path.data);
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

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 (RFC 4648 §4, '=' padding required, as Python's b64decode wants)
 * into out. Returns 0, or -EINVAL with the reason in err. */
static int base64_decode(const char *s, size_t len, struct buf *out, char *err, size_t errlen)
{
	if (len % 4 != 0) {
		snprintf(err, errlen,
			 "its length (%zu) is not a multiple of 4 (pad the end with '=')", len);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i += 4) {
		uint32_t acc = 0;
		int pad = 0;
		for (size_t j = 0; j < 4; j++) {
			unsigned char ch = (unsigned char)s[i + j];
			int v = b64_value(ch);
			if (ch == '=' && i + 4 == len && j >= 2) {
				pad++;
				acc <<= 6;
				continue;
			}
			if (ch == '=' || (pad && v >= 0)) {
				snprintf(err, errlen,
					 "'=' at character %zu: padding may only end the text",
					 i + j + 1);
				return -EINVAL;
			}
			if (v < 0) {
				if (ch >= 0x20 && ch < 0x7f)
					snprintf(err, errlen,
						 "character %zu ('%c') is not in the base64 "
						 "alphabet",
						 i + j + 1, ch);
				else
					snprintf(err, errlen,
						 "character %zu (byte 0x%02x) is not in the base64 "
						 "alphabet",
						 i + j + 1, ch);
				return -EINVAL;
			}
			acc = acc << 6 | (uint32_t)v;
		}
		unsigned char bytes[3] = {(unsigned char)(acc >> 16), (unsigned char)(acc >> 8),
					  (unsigned char)acc};
		buf_append(out, bytes, (size_t)(3 - pad));
	}
	return 0;
}

static void base64_encode(const unsigned char *p, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i += 3) {
		size_t n = len - i < 3 ? len - i : 3;
		uint32_t acc = (uint32_t)p[i] << 16;
		if (n > 1)
			acc |= (uint32_t)p[i + 1] << 8;
		if (n > 2)
			acc |= p[i + 2];
		char quad[4] = {b64_alphabet[acc >> 18 & 63], b64_alphabet[acc >> 12 & 63],
				n > 1 ? b64_alphabet[acc >> 6 & 63] : '=',
				n > 2 ? b64_alphabet[acc & 63] : '='};
		buf_append(out, quad, 4);
	}
}

static int from_json(struct conv *c, struct laurel_value *v, json_t *j, int depth);

static int bytes_from_json(struct conv *c, struct laurel_value *v, json_t *obj, json_t *b64)
{
	if (json_object_size(obj) != 1)
		return fail(c, "an object with a \"" BYTES_KEY "\" key must have no other key");
	if (!json_is_string(b64))
		return fail(c, "\"" BYTES_KEY "\" must be a base64 string");
	struct buf bytes;
	char why[160];
	buf_init(&bytes);
	int rc = base64_decode(json_string_value(b64), json_string_length(b64), &bytes, why,
			       sizeof(why));
	if (rc == 0)
		laurel_value_set_bytes(c->m, v, bytes.len ? bytes.data : "", bytes.len);
	else
		fail(c, "\"" BYTES_KEY "\" is not valid base64: %s", why);
	buf_fini(&bytes);
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

/* Converts j into v; depth is the nesting level j would have if it is a list or a map. */
static int from_json(struct conv *c, struct laurel_value *v, json_t *j, int depth)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		json_t *b64 = json_object_getn(j, BYTES_KEY, BYTES_KEY_LEN);
		if (b64)
			return bytes_from_json(c, v, j, b64);
		if (depth > JSON_MSG_MAX_DEPTH)
			return fail(c, "lists and objects nest deeper than %d levels",
				    JSON_MSG_MAX_DEPTH);
		return map_from_json(c, v, j, depth);
	}
	case JSON_ARRAY:
		if (depth > JSON_MSG_MAX_DEPTH)
			return fail(c, "lists and objects nest deeper than %d levels",
				    JSON_MSG_MAX_DEPTH);
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

static const char *json_type_name(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

int json_to_msg(const char *text, size_t len, struct laurel_msg **out, char *err, size_t errlen)
{
	json_error_t jerr;
	use_xmalloc();
	json_t *root = json_loadb(text, len,
				  JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root) {
		snprintf(err, errlen, "bad JSON at line %d, column %d: %s", jerr.line, jerr.column,
			 jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root) || json_object_getn(root, BYTES_KEY, BYTES_KEY_LEN)) {
		snprintf(err, errlen, "bad message: it must be a JSON object ({...}), not %s",
			 json_is_object(root) ? "bytes ({\"" BYTES_KEY "\": ...})"
					      : json_type_name(root));
		json_decref(root);
		return -EINVAL;
	}
	struct conv c = {.m = laurel_msg_new(), .err = err, .errlen = errlen};
	buf_init(&c.path);
	buf_append_str(&c.path, "$");
	int rc = map_from_json(&c, laurel_msg_root(c.m), root, 1);
	buf_fini(&c.path);
	json_decref(root);
	if (rc < 0) {
		laurel_msg_free(c.m);
		return rc;
	}
	*out = c.m;
	return 0;
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

static json_t *text_to_json(const struct laurel_str *s)
{
	json_t *j = json_stringn(s->ptr, s->len);
	if (j)
		return j;
	struct buf clean;
	buf_init(&clean);
	utf8_sanitize(s->ptr, s->len, &clean);
	j = json_stringn(clean.len ? clean.data : "", clean.len);
	buf_fini(&clean);
	return j;
}

static json_t *to_json(const struct laurel_value *v)
{
	switch (v->type) {
	case LAUREL_NIL:
		return json_null();
	case LAUREL_BOOL:
		return json_boolean(v->u.b);
	case LAUREL_INT:
		return json_integer((json_int_t)v->u.i);
	case LAUREL_DOUBLE:
		return isfinite(v->u.d) ? json_real(v->u.d) : json_null();
	case LAUREL_TEXT:
		return text_to_json(&v->u.s);
	case LAUREL_BYTES: {
		struct buf b64;
		buf_init(&b64);
		base64_encode((const unsigned char *)v->u.s.ptr, v->u.s.len, &b64);
		json_t *obj = json_object();
		json_object_set_new(obj, BYTES_KEY, json_stringn(b64.len ? b64.data : "", b64.len));
		buf_fini(&b64);
		return obj;
	}
	case LAUREL_LIST: {
		json_t *arr = json_array();
		for (size_t i = 0; i < v->u.list.len; i++)
			json_array_append_new(arr, to_json(&v->u.list.items[i]));
		return arr;
	}
	case LAUREL_MAP: {
		json_t *obj = json_object();
		for (size_t i = 0; i < v->u.map.len; i++) {
			const struct laurel_entry *e = &v->u.map.items[i];
			json_t *key = text_to_json(&e->key);
			json_object_setn_new(obj, json_string_value(key), json_string_length(key),
					     to_json(&e->value));
			json_decref(key);
		}
		return obj;
	}
	}
	return json_null();
}

char *json_from_msg(const struct laurel_msg *m, bool pretty)
{
	use_xmalloc();
	json_t *root = to_json(laurel_msg_croot(m));
	char *text = json_dumps(root, pretty ? JSON_INDENT(2) : JSON_COMPACT);
	json_decref(root);
	if (!text) {
		fprintf(stderr, "laurel: out of memory writing JSON\n");
		abort();
	}
	return text;
}
