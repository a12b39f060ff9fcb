/* WebSocket frames as a client sends them (RFC 6455 §5.2), for tests to feed to the interface's
 * parser or write on a socket, good ones and deliberately bad ones alike. */
#ifndef LAUREL_TESTS_LIB_WSFRAME_H
#define LAUREL_TESTS_LIB_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Appends a frame to b: b0 is its first byte as given (FIN, RSV bits, opcode), the length in the
 * shortest form (7, 16 or 64 bits), the payload masked with a fixed key when masked. */
void wsframe_append(struct buf *b, uint8_t b0, bool masked, const void *data, size_t len);
/* Appends a masked close frame with code and a reason of rlen bytes (at most 123). */
void wsframe_close(struct buf *b, int code, const void *reason, size_t rlen);

#endif
