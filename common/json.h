/* laurel values <-> JSON text: the only module that touches jansson; everything else sees struct
 * laurel_value. Pure: no I/O.
 *
 * The mapping (both ways):
 *   JSON string        text
 *   JSON integer       int (signed 64-bit; a JSON integer beyond it is refused)
 *   JSON real          double
 *   true / false       bool
 *   null               nil
 *   array              list
 *   object             map (key order kept)
 *
 * Bytes, a NaN or infinite double, and text that is not UTF-8 have no JSON form. The policy says
 * what becomes of them (jansson's flags own the JSON_* names, hence JSON_POLICY_*):
 *   JSON_POLICY_STRICT  consumers (include/laurel/consumer.h): dumping one fails with -EINVAL.
 *                       Parsing reads an object with a "$bytes" key as a plain map, and of
 *                       duplicate keys keeps the last value (as Python's json does).
 *   JSON_POLICY_LOSSY   the operator tool (docs/tool.md): bytes are {"$bytes": "<base64>"} both
 *                       ways (standard alphabet, '=' padding required; such an object has no
 *                       other key), a non-finite double is dumped as null, and each byte of text
 *                       (or of a key) that does not start a valid UTF-8 sequence as U+FFFD.
 *                       Parsing refuses duplicate keys.
 */
#ifndef LAUREL_COMMON_JSON_H
#define LAUREL_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "laurel/message.h"

/* Lists and maps nest at most this deep, the outermost counting 1: receivers decode messages with
 * this limit by default (struct laurel_decode_limits), so a deeper value could not be read back. */
#define JSON_MAX_DEPTH 32
/* Values to dump are an application's own or came through a decoder's limits: this only keeps a
 * cyclic mistake from exhausting the stack. */
#define JSON_DUMP_MAX_DEPTH 256

enum json_policy {
	JSON_POLICY_STRICT,
	JSON_POLICY_LOSSY,
};

/* Parses text[0..len) (one JSON value of any type; strings may hold \u0000, keys may not) into
 * slot, allocating in m. Returns 0, or -EINVAL with a phrase in err that completes "the message
 * is ...": "not JSON: WHY at line L, column C" (an integer beyond 64 bits included), or "not
 * valid at PATH: WHY" for a value that cannot be taken, PATH naming it as "$.headers[0][1]":
 * nested deeper than JSON_MAX_DEPTH, or (JSON_POLICY_LOSSY) a bad "$bytes" object. slot is then
 * nil, with whatever was allocated for it left in m. */
int json_parse(const char *text, size_t len, enum json_policy policy, struct laurel_msg *m,
	       struct laurel_value *slot, char *err, size_t errlen);
/* As json_parse, with duplicate keys refused (unique) or the last one kept, whatever the policy
 * (laurel_json_parse's LAUREL_JSON_UNIQUE_KEYS). */
int json_parse_unique(const char *text, size_t len, enum json_policy policy, bool unique,
		      struct laurel_msg *m, struct laurel_value *slot, char *err, size_t errlen);

/* v as compact JSON on one line, wrapped as {"stream": stream, "payload": v} when stream is not
 * NULL, in a new NUL-terminated buffer (*out, caller frees; *len its length if len is not NULL).
 * Returns 0, or -EINVAL: nested deeper than JSON_DUMP_MAX_DEPTH, or (JSON_POLICY_STRICT) a value
 * that has no JSON form, as a stream name that is not UTF-8 has none. */
int json_dump(const struct laurel_value *v, enum json_policy policy, const char *stream, char **out,
	      size_t *len);

#endif
