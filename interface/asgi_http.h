/* Pieces of the translation between HTTP/1.1 and ASGI messages (SPEC §4): no I/O, no connection
 * state. */
#ifndef LAUREL_INTERFACE_ASGI_HTTP_H
#define LAUREL_INTERFACE_ASGI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "interface/http1.h"
#include "laurel/message.h"

/* Percent-decodes the path (n bytes) into out; false if it is not valid UTF-8 afterwards. */
bool asgi_http_decode_path(const char *p, size_t n, struct buf *out);
/* The first header named name (lower case), or NULL. */
const struct http1_header *asgi_http_header(const struct http1_request *h, const char *name);
/* Puts key: [host, port], or nil when !have (a unix socket). */
void asgi_http_put_addr(struct laurel_msg *m, const char *key, const char *host, int port,
			bool have);
/* Puts headers: [[name, value], ...], leaving out names with "_" as Daphne does. */
void asgi_http_put_headers(struct laurel_msg *m, const struct http1_request *h);

#endif
