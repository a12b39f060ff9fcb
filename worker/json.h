/* JSON for consumers (include/laurel/consumer.h): laurel values to and from JSON text. The only
 * module of the worker that touches jansson. Pure: no I/O. */
#ifndef LAUREL_WORKER_JSON_H
#define LAUREL_WORKER_JSON_H

#include <stddef.h>

#include "laurel/message.h"

/* Most nesting of arrays and objects accepted from a peer, as for msgpack. */
#define JSON_MAX_DEPTH 32

/* Parses text[0..len) (any JSON value) into slot, allocating in m. Returns 0, or -EBADMSG with a
 * sentence in err (slot is then nil): not JSON, an integer outside int64, nesting deeper than
 * JSON_MAX_DEPTH. */
int json_parse(const char *text, size_t len, struct laurel_msg *m, struct laurel_value *slot,
	       char *err, size_t errlen);

/* v as compact JSON, wrapped as {"stream": stream, "payload": v} when stream is not NULL, in a
 * new NUL-terminated buffer (caller frees). Returns 0 or -EINVAL (bytes, a non-finite double,
 * text that is not UTF-8). */
int json_dump(const char *stream, const struct laurel_value *v, char **out, size_t *len);

#endif
