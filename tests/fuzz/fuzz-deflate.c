/* libFuzzer driver for interface/deflate.c. Byte 0 picks what the rest is:
 *  - a Sec-WebSocket-Extensions value: deflate_negotiate returns 0 or 9..15, and an accepted
 *    offer's answer names permessage-deflate;
 *  - a compressed message from a client: deflate_inflate never writes more than the limit (+0),
 *    and says DEFLATE_TOO_BIG exactly when the whole would be larger;
 *  - a message to send: deflate_message's output inflates back to it. */
#include "interface/deflate.h"
#include "common/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct buf a, b;
	buf_init(&a);
	buf_init(&b);
	switch (data[0] % 3) {
	case 0: {
		buf_append(&a, p, n);
		if (strlen(a.data) != a.len)
			break; /* header values have no NUL */
		const char *v = a.data;
		bool named;
		int bits = deflate_negotiate(&v, 1, &named);
		if (bits && (bits < DEFLATE_MIN_BITS || bits > DEFLATE_MAX_BITS))
			abort();
		if (!bits && named)
			abort();
		if (bits) {
			char resp[DEFLATE_RESPONSE_MAX];
			deflate_response(bits, named, resp);
			if (strncmp(resp, "permessage-deflate; ", 20) != 0)
				abort();
		}
		break;
	}
	case 1: {
		size_t max = (size_t)(data[0] / 3) * 97; /* 0 .. 8245 */
		int rc = deflate_inflate(&a, p, n, max);
		if (rc != 0 && rc != DEFLATE_BAD_DATA && rc != DEFLATE_TOO_BIG)
			abort();
		if (rc != DEFLATE_TOO_BIG && a.len > max)
			abort();
		if (rc == DEFLATE_TOO_BIG && a.len != max + 1)
			abort();
		/* Without a limit that matters, the same input inflates to the same prefix. */
		if (rc == 0 || rc == DEFLATE_TOO_BIG) {
			int rc2 = deflate_inflate(&b, p, n, 1 << 20);
			if (rc2 == 0 && rc == 0 && (b.len != a.len || memcmp(a.data, b.data, a.len)))
				abort();
			if (rc2 == 0 && rc == DEFLATE_TOO_BIG && b.len <= max)
				abort();
		}
		break;
	}
	default: {
		int bits = DEFLATE_MIN_BITS + data[0] % DEFLATE_VARIANTS;
		size_t z = deflate_message(&a, p, n, bits, 1 + data[0] % 9);
		if (!z || z != a.len)
			abort();
		if (deflate_inflate(&b, (const uint8_t *)a.data, a.len, n) != 0 || b.len != n ||
		    (n && memcmp(b.data, p, n)))
			abort();
		break;
	}
	}
	buf_fini(&a);
	buf_fini(&b);
	return 0;
}
