/* The first message of an HTTP response (SPEC §4), as it goes on a reply channel:
 * {status: int, headers: [[name, value] as bytes...], content: bin, more_content: bool}.
 * The worker's consumer API and the test responder both build it here, so they send one shape. */
#ifndef LAUREL_COMMON_RESPONSE_H
#define LAUREL_COMMON_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "laurel/consumer.h"
#include "laurel/message.h"

/* A new message; the caller frees it with laurel_msg_free. Header names and values are
 * NUL-terminated and copied as bytes, as given; content may be NULL when len is 0. Checks
 * nothing: status and the headers are the caller's to validate. */
struct laurel_msg *response_start(int status, const struct laurel_header *headers, size_t nheaders,
				  const void *content, size_t len, bool more);

#endif
