/* Helpers the example applications share: JSON over HTTP, text values, query strings and names.
 * Compiled into each example's shared object; no state, so any number of worker processes (or
 * threads of the development server) may run them. */
#ifndef LAUREL_EXAMPLE_H
#define LAUREL_EXAMPLE_H

#include <stdbool.h>
#include <stddef.h>

#include "laurel/consumer.h"

/* An HTTP response whose body is v as JSON (and a newline), with Content-Type application/json
 * and the extra headers (may be NULL / 0). v may be what laurel_build_done gave: NULL fails. */
int example_reply_http_json(struct laurel_ctx *ctx, int status, const struct laurel_value *v,
			    const struct laurel_header *extra, size_t nextra);

/* {"error": reason} as an HTTP response of that status. */
int example_reply_http_error(struct laurel_ctx *ctx, int status, const char *reason);

/* The text of v as a C string (its length in *len, if len is not NULL), or NULL when v is NULL,
 * not text, or holds a NUL. */
const char *example_text(const struct laurel_value *v, size_t *len);

/* The value of the first name=value pair of the message's query_string, percent-decoded ('+' is a
 * space), as a new NUL-terminated string the caller frees; NULL when the parameter is missing, or
 * when it is malformed or decodes to a NUL byte. */
char *example_query_param(const struct laurel_msg *m, const char *name);

/* True if s is 1 to max characters, each an ASCII letter, a digit, '-' or '_': what the examples
 * accept as room and user names, so that they fit in group and channel names (SPEC §2). */
bool example_valid_name(const char *s, size_t max);

#endif
