/* libFuzzer driver for interface/asgi_http, both ways. First byte even: the rest is HTTP/1.1 fed
 * to the parser, and every head it accepts is checked and translated to its message (which must
 * encode). First byte odd: the rest is a msgpack reply message, turned into a response head; an
 * accepted head must be one status line and header lines, each ending in CRLF, with no bare CR
 * or LF and no NUL (no header injection), ending in an empty line. Any violation aborts. */
#include "interface/asgi_http.h"
#include "interface/http1.h"
#include "common/buf.h"
#include "laurel/message.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_head(void *owner, struct http1_request *h)
{
	const uint8_t *flags = owner;
	struct asgi_http_target t;
	int status = asgi_http_target(h, &t);
	if (status == 0) {
		if (t.path.len == 0)
			abort(); /* a checked target has a path */
		const struct asgi_http_peer peer = {(*flags & 2) != 0, "127.0.0.1", 1, "::1", 2};
		const struct asgi_http_options o = {(*flags & 4) != 0, "/root"};
		struct laurel_msg *m = asgi_http_message(h, &t, &peer, &o, "laurel.response.x!q1");
		char *enc;
		size_t len;
		laurel_msg_encode(m, &enc, &len);
		free(enc);
		laurel_msg_free(m);
	} else if (status != 400) {
		abort();
	}
	asgi_http_target_fini(&t);
	return status;
}

static int on_body(void *owner, const char *d, size_t n)
{
	return 0;
}

static int on_complete(void *owner)
{
	return 0;
}

static void check_head(const struct buf *b)
{
	const char *p = b->data;
	size_t n = b->len;
	if (n < 4 || memcmp(p, "HTTP/1.1 ", 9) != 0 || memcmp(p + n - 4, "\r\n\r\n", 4) != 0)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\0')
			abort();
		if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
			abort();
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			abort();
	}
	/* Every line after the status line is "name: value" with a token name. */
	const char *line = memchr(p, '\n', n) + 1;
	while (line < p + n - 2) {
		const char *end = memchr(line, '\r', (size_t)(p + n - line));
		const char *colon = memchr(line, ':', (size_t)(end - line));
		if (!colon || colon == line)
			abort();
		for (const char *c = line; c < colon; c++)
			if (*c <= ' ' || *c >= 0x7f)
				abort();
		line = end + 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	data++;
	size--;
	if ((flags & 1) == 0) {
		static const struct http1_callbacks cb = {on_head, on_body, on_complete};
		static const struct http1_limits lim = {.max_uri = 4096,
							.max_header_bytes = 8192,
							.max_headers = 32,
							.max_body = 1024};
		struct http1_parser *p = http1_new(&lim, &cb, &flags);
		const char *in = (const char *)data;
		size_t left = size;
		while (left) {
			int status = 0;
			ssize_t k = http1_feed(p, in, left, &status);
			if (k <= 0 || !http1_done(p))
				break;
			in += k;
			left -= (size_t)k;
			http1_next(p);
		}
		http1_free(p);
		return 0;
	}
	struct laurel_msg *m = NULL;
	if (laurel_msg_decode(data, size, NULL, &m) != 0)
		return 0;
	struct asgi_http_response r = {.head_request = flags & 2,
				       .version_minor = (flags & 4) ? 0 : 1,
				       .keep_alive = flags & 8,
				       .more = flags & 16,
				       .date = "Thu, 01 Jan 1970 00:00:00 GMT"};
	struct buf head;
	buf_init(&head);
	if (asgi_http_response_head(m, &r, &head) == 0) {
		check_head(&head);
		if (r.status < 100 || r.status > 999 || (r.chunked && r.no_body))
			abort();
	} else if (head.len) {
		abort();
	}
	buf_fini(&head);
	laurel_msg_free(m);
	return 0;
}
