/* laurel values <-> JSON through jansson. */
#include "worker/json.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "laurel/consumer.h"

/* Values to dump are the application's own (or came through the limits of a decoder), so this
 * only keeps a cyclic mistake from exhausting the stack. */
#define JSON_DUMP_MAX_DEPTH 256

static int depth_of(const json_t *j, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return depth;
	int most = depth;
	if (json_is_array(j)) {
		size_t i;
		json_t *x;
		json_array_foreach(j, i, x)
		{
			int d = depth_of(x, depth + 1);
			if (d > most)
				most = d;
		}
	} else if (json_is_object(j)) {
		const char *k;
		json_t *x;
		json_object_foreach((json_t *)j, k, x)
		{
			int d = depth_of(x, depth + 1);
			if (d > most)
				most = d;
		}
	}
	return most;
}

static void from_json(struct laurel_msg *m, struct laurel_value *v, json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *k;
		json_t *x;
		laurel_value_set_map(m, v, json_object_size(j));
		json_object_foreach(j, k, x)
		{
			/* A slot is valid until the next insertion into the same map. */
			from_json(m, laurel_map_put(m, v, k), x);
		}
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *x;
		laurel_value_set_list(m, v, json_array_size(j));
		json_array_foreach(j, i, x)
		{
			from_json(m, laurel_list_push(m, v), x);
		}
		break;
	}
	case JSON_STRING:
		laurel_value_set_text(m, v, json_string_value(j), json_string_length(j));
		break;
	case JSON_INTEGER:
		laurel_value_set_int(v, (int64_t)json_integer_value(j));
		break;
	case JSON_REAL:
		laurel_value_set_double(v, json_real_value(j));
		break;
	case JSON_TRUE:
		laurel_value_set_bool(v, true);
		break;
	case JSON_FALSE:
		laurel_value_set_bool(v, false);
		break;
	case JSON_NULL:
		laurel_value_set_nil(v);
		break;
	}
}

int json_parse(const char *text, size_t len, struct laurel_msg *m, struct laurel_value *slot,
	       char *err, size_t errlen)
{
	json_error_t e;
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	laurel_value_set_nil(slot);
	if (!j) {
		snprintf(err, errlen, "not JSON: %s at offset %d", e.text, e.position);
		return -EBADMSG;
	}
	if (depth_of(j, 0) > JSON_MAX_DEPTH) {
		snprintf(err, errlen, "JSON nested deeper than %d", JSON_MAX_DEPTH);
		json_decref(j);
		return -EBADMSG;
	}
	from_json(m, slot, j);
	json_decref(j);
	return 0;
}

/* A new reference, or NULL for a value without a JSON form. */
static json_t *to_json(const struct laurel_value *v, int depth)
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
		return isfinite(v->u.d) ? json_real(v->u.d) : NULL;
	case LAUREL_TEXT:
		return json_stringn(v->u.s.ptr, v->u.s.len); /* NULL unless UTF-8 */
	case LAUREL_BYTES:
		return NULL;
	case LAUREL_LIST:
		j = json_array();
		for (size_t i = 0; i < v->u.list.len; i++) {
			json_t *x = to_json(&v->u.list.items[i], depth + 1);
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
			json_t *x = to_json(&e->value, depth + 1);
			if (!x || json_object_setn_new(j, e->key.ptr, e->key.len, x)) {
				json_decref(j);
				return NULL;
			}
		}
		return j;
	}
	return NULL;
}

int json_dump(const char *stream, const struct laurel_value *v, char **out, size_t *len)
{
	json_t *j = to_json(v, 0);
	if (!j)
		return -EINVAL;
	if (stream) {
		json_t *w = json_object();
		json_t *s = json_string(stream);
		if (!s) {
			json_decref(w);
			json_decref(j);
			return -EINVAL;
		}
		json_object_set_new(w, "stream", s);
		json_object_set_new(w, "payload", j);
		j = w;
	}
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(j);
	if (!text)
		return -EINVAL;
	*out = text;
	if (len)
		*len = strlen(text);
	return 0;
}

int laurel_json_dump(const struct laurel_value *v, char **out, size_t *len)
{
	if (!v || !out)
		return -EINVAL;
	return json_dump(NULL, v, out, len);
}
