/* JSON <-> laurel message conversion for the operator tool (docs/tool.md). The only module here
 * that touches jansson; everything else sees struct laurel_msg.
 *
 * The mapping (both ways):
 *   JSON string                      text
 *   {"$bytes": "<base64>"}           bytes (standard alphabet, '=' padding required)
 *   JSON integer                     int (signed 64-bit)
 *   JSON real                        double
 *   true / false                     bool
 *   null                             nil
 *   array                            list
 *   object                           map (key order kept)
 * The top level is an object. An object that has a "$bytes" key must have no other key.
 */
#ifndef LAUREL_COMMON_JSON_H
#define LAUREL_COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "laurel/message.h"

/* Lists and maps nest at most this deep, counting the top-level object as 1: receivers decode
 * with this limit by default (struct laurel_decode_limits), so a deeper message could not be
 * read back. */
#define JSON_MSG_MAX_DEPTH 32

/* Parses text[0..len) as one JSON object and builds a message from it. Duplicate keys are
 * rejected; strings may hold \u0000. Returns 0 and sets *out (free it with laurel_msg_free), or
 * -EINVAL with one line in err (errlen bytes) saying what is wrong and where: the line and column
 * of a syntax error, or the path of a value that cannot be mapped ("$.headers[0][1]": bad base64,
 * too deep). On error *out is untouched. */
int json_to_msg(const char *text, size_t len, struct laurel_msg **out, char *err, size_t errlen);

/* The reverse mapping: m as JSON text, NUL-terminated, compact on one line or indented by two
 * spaces (pretty), without a trailing newline. Free it with free(). Never fails. Two values that
 * JSON cannot hold are written lossily: text (and keys) that is not valid UTF-8 gets U+FFFD for
 * each bad byte, and a double that is NaN or infinite becomes null. */
char *json_from_msg(const struct laurel_msg *m, bool pretty);

#endif
