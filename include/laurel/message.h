/* laurel messages: the value model carried on channels (docs/protocol.md §1).
 *
 * A message is a map with text keys. Values are text, bytes, signed 64-bit integers, doubles,
 * booleans, nil, lists and maps. Text and bytes are distinct types: on the wire text is msgpack
 * `str` and bytes are msgpack `bin`, and the Python peers depend on the difference.
 *
 * Memory: a struct laurel_msg owns every value, key and string inside it (one arena, freed at
 * once by laurel_msg_free). Pointers obtained from a message are borrowed and stay valid until the
 * message is freed, except that a slot returned by laurel_map_put / laurel_list_push is valid only
 * until the next insertion into the same container (the container may grow and move). To build
 * nested values without slots, use the value builder below.
 *
 * Map key order is preserved (insertion order, or wire order after decoding), so a decoded message
 * re-encodes to the same bytes. Text and bytes are stored with a NUL after their last byte, which
 * is not counted in len, so text can be used as a C string when it holds no NUL itself.
 *
 * Messages are not thread-safe; a message may move between threads when handed over.
 */
#ifndef LAUREL_MESSAGE_H
#define LAUREL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum laurel_type {
	LAUREL_NIL = 0,
	LAUREL_BOOL,
	LAUREL_INT,
	LAUREL_DOUBLE,
	LAUREL_TEXT,
	LAUREL_BYTES,
	LAUREL_LIST,
	LAUREL_MAP,
};

struct laurel_value;
struct laurel_entry;

struct laurel_str {
	const char *ptr; /* NUL-terminated after len bytes */
	size_t len;
};

/* Read the fields directly; change them only through the functions below. */
struct laurel_value {
	enum laurel_type type;
	union {
		bool b;
		int64_t i;
		double d;
		struct laurel_str s; /* LAUREL_TEXT and LAUREL_BYTES */
		struct {
			struct laurel_value *items;
			size_t len, cap;
		} list;
		struct {
			struct laurel_entry *items;
			size_t len, cap;
		} map;
	} u;
};

struct laurel_entry {
	struct laurel_str key;
	struct laurel_value value;
};

struct laurel_msg;

/* A new message whose root is an empty map. Never returns NULL (out of memory aborts). */
struct laurel_msg *laurel_msg_new(void);
/* Frees the message and everything in it. NULL is a no-op. */
void laurel_msg_free(struct laurel_msg *m);
/* A deep copy. */
struct laurel_msg *laurel_msg_clone(const struct laurel_msg *m);

/* The root map. */
struct laurel_value *laurel_msg_root(struct laurel_msg *m);
const struct laurel_value *laurel_msg_croot(const struct laurel_msg *m);

/* --- Building --------------------------------------------------------------------------------
 * laurel_map_put returns the slot for key in map (which must be a map of m): the existing value,
 * reset to nil in place (the key keeps its position), or a new nil entry appended at the end.
 * laurel_list_push appends a nil slot to list. Set the slot with a laurel_value_set_* call. */
struct laurel_value *laurel_map_put(struct laurel_msg *m, struct laurel_value *map, const char *key);
struct laurel_value *laurel_map_putn(struct laurel_msg *m, struct laurel_value *map, const char *key,
				     size_t keylen);
struct laurel_value *laurel_list_push(struct laurel_msg *m, struct laurel_value *list);
/* Removes key from map, keeping the order of the others. Returns true if it was there. */
bool laurel_map_remove(struct laurel_value *map, const char *key);

void laurel_value_set_nil(struct laurel_value *v);
void laurel_value_set_bool(struct laurel_value *v, bool b);
void laurel_value_set_int(struct laurel_value *v, int64_t i);
void laurel_value_set_double(struct laurel_value *v, double d);
/* Text and bytes are copied into m. Text is not checked for UTF-8 here, nor by the codec; the
 * WebSocket layer checks it where the protocol requires it. Python peers decode text as UTF-8 and
 * fail on a message whose text is not: put data that may not be UTF-8 in bytes. */
void laurel_value_set_text(struct laurel_msg *m, struct laurel_value *v, const char *s, size_t len);
void laurel_value_set_bytes(struct laurel_msg *m, struct laurel_value *v, const void *p, size_t len);
/* Makes v an empty list / map, with room for hint items before it grows. */
void laurel_value_set_list(struct laurel_msg *m, struct laurel_value *v, size_t hint);
void laurel_value_set_map(struct laurel_msg *m, struct laurel_value *v, size_t hint);
/* Deep-copies src (from any message) into v, allocating in m. */
void laurel_value_copy(struct laurel_msg *m, struct laurel_value *v, const struct laurel_value *src);

/* --- The value builder ------------------------------------------------------------------------
 * Builds one value — a nested JSON reply, say — call by call, without slots to hold on to:
 *
 *	struct laurel_builder *b = laurel_ctx_builder(ctx);	// or laurel_builder_new()
 *	laurel_build_map(b, NULL);
 *	laurel_build_text(b, "type", "presence");
 *	laurel_build_int(b, "count", n);
 *	laurel_build_list(b, "members");
 *	for (size_t i = 0; i < n; i++)
 *		laurel_build_text(b, NULL, members[i]);
 *	laurel_build_end(b);					// the list
 *	laurel_build_end(b);					// the map
 *	return laurel_reply_json(ctx, laurel_build_done(b));
 *
 * Every call adds one value to the innermost open map or list, or makes the top value: key names
 * it inside a map (a key given twice keeps its first place and takes the last value) and must be
 * NULL inside a list and for the top value. laurel_build_map and laurel_build_list open a container
 * that the values after them go into, until its laurel_build_end. Strings and values are copied.
 *
 * Mistakes — a key missing in a map or given in a list, a second top value, an end with nothing
 * open, nesting deeper than LAUREL_BUILD_MAX_DEPTH — are kept: the calls after the first one do
 * nothing, and laurel_build_done returns NULL (laurel_build_error says what went wrong). So a
 * consumer need not check each call, only the result. Calls return 0 or -EINVAL (this call or an
 * earlier one failed). A builder is used by one thread at a time. */
#define LAUREL_BUILD_MAX_DEPTH 32

struct laurel_builder;

/* A new empty builder; free it with laurel_builder_free (NULL is a no-op). Never NULL. */
struct laurel_builder *laurel_builder_new(void);
void laurel_builder_free(struct laurel_builder *b);
/* Empties it to build another value; the last value and error are forgotten. */
void laurel_builder_reset(struct laurel_builder *b);

int laurel_build_map(struct laurel_builder *b, const char *key);
int laurel_build_list(struct laurel_builder *b, const char *key);
int laurel_build_end(struct laurel_builder *b);
/* s NULL adds nil (JSON null), so that an optional string needs no test. */
int laurel_build_text(struct laurel_builder *b, const char *key, const char *s);
int laurel_build_textn(struct laurel_builder *b, const char *key, const char *s, size_t len);
int laurel_build_textf(struct laurel_builder *b, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int laurel_build_bytes(struct laurel_builder *b, const char *key, const void *p, size_t len);
int laurel_build_int(struct laurel_builder *b, const char *key, int64_t i);
int laurel_build_double(struct laurel_builder *b, const char *key, double d);
int laurel_build_bool(struct laurel_builder *b, const char *key, bool v);
int laurel_build_nil(struct laurel_builder *b, const char *key);
/* A deep copy of v (from any message). */
int laurel_build_value(struct laurel_builder *b, const char *key, const struct laurel_value *v);

/* The value built: borrowed, valid until the builder is reset or freed. NULL if nothing was
 * built, a container is still open, or a call failed. */
const struct laurel_value *laurel_build_done(struct laurel_builder *b);
/* Why laurel_build_done returns NULL, in a sentence; "" when it does not. */
const char *laurel_build_error(const struct laurel_builder *b);

/* Shorthands on the root map. s is a NUL-terminated C string. */
void laurel_msg_set_text(struct laurel_msg *m, const char *key, const char *s);
void laurel_msg_set_textn(struct laurel_msg *m, const char *key, const char *s, size_t len);
void laurel_msg_set_bytes(struct laurel_msg *m, const char *key, const void *p, size_t len);
void laurel_msg_set_int(struct laurel_msg *m, const char *key, int64_t i);
void laurel_msg_set_bool(struct laurel_msg *m, const char *key, bool b);
void laurel_msg_set_double(struct laurel_msg *m, const char *key, double d);
void laurel_msg_set_nil(struct laurel_msg *m, const char *key);

/* --- Reading --------------------------------------------------------------------------------- */

/* The value of key in map, or NULL if map is not a map or has no such key. */
const struct laurel_value *laurel_map_get(const struct laurel_value *map, const char *key);
/* laurel_map_get on the root. */
const struct laurel_value *laurel_msg_get(const struct laurel_msg *m, const char *key);

/* Typed getters on a map (a JSON object, say: laurel_ctx_json) and on a message's root map. The
 * pointer ones return NULL when map is not a map, the key is missing or holds another type; len
 * may be NULL. The others return 0, -ENOENT (missing, or not a map) or -EINVAL (other type). */
const char *laurel_map_get_text(const struct laurel_value *map, const char *key, size_t *len);
const void *laurel_map_get_bytes(const struct laurel_value *map, const char *key, size_t *len);
int laurel_map_get_int(const struct laurel_value *map, const char *key, int64_t *out);
int laurel_map_get_bool(const struct laurel_value *map, const char *key, bool *out);
int laurel_map_get_double(const struct laurel_value *map, const char *key, double *out);

const char *laurel_msg_get_text(const struct laurel_msg *m, const char *key, size_t *len);
const void *laurel_msg_get_bytes(const struct laurel_msg *m, const char *key, size_t *len);
int laurel_msg_get_int(const struct laurel_msg *m, const char *key, int64_t *out);
int laurel_msg_get_bool(const struct laurel_msg *m, const char *key, bool *out);
int laurel_msg_get_double(const struct laurel_msg *m, const char *key, double *out);

/* A short name for a type ("text", "bytes", ...), for messages. */
const char *laurel_type_name(enum laurel_type t);

/* True if the two values are equal in type and content (maps compare in order). */
bool laurel_value_equal(const struct laurel_value *a, const struct laurel_value *b);

/* --- Encoding (msgpack) ---------------------------------------------------------------------- */

/* Limits for decoding bytes that a peer controls. Zero fields mean the defaults below. */
struct laurel_decode_limits {
	size_t max_bytes; /* whole input; default 64 MiB */
	size_t max_depth; /* nesting of lists and maps; default 32 */
};

/* Decodes one msgpack map with text keys from data[0..len). Every msgpack width is accepted.
 * Returns 0 and sets *out (caller frees), or: -EINVAL malformed, truncated, trailing bytes, not a
 * map at the root, a non-text key, or an ext/timestamp value; -E2BIG above a limit. On error *out
 * is untouched. Never reads outside data. */
int laurel_msg_decode(const void *data, size_t len, const struct laurel_decode_limits *limits,
		      struct laurel_msg **out);

/* Encodes m as msgpack into a new buffer (*data, *len; caller frees *data with free()).
 * Integers use the smallest width, doubles float64, text str, bytes bin — as Python's msgpack
 * with use_bin_type=True, so captured messages re-encode byte for byte. */
void laurel_msg_encode(const struct laurel_msg *m, char **data, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
