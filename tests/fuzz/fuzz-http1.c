/* libFuzzer driver for interface/http1: arbitrary bytes, with tiny limits, fed whole and then
 * split in pieces whose sizes come from the input itself; pipelined requests are taken one at a
 * time with http1_next. Besides the sanitizers, it checks the contract: a feed never claims more
 * bytes than it was given, a request exists from on_head until http1_next, and the split parse
 * sees the same requests and the same refusal as the whole one. */
#include "interface/http1.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct owner {
	struct http1_parser *p;
	uint32_t digest; /* of everything the callbacks saw */
	int refuse;	 /* on_head refuses when the target's first byte is this */
};

static void mix(struct owner *o, const void *data, size_t len)
{
	const unsigned char *b = data;
	for (size_t i = 0; i < len; i++)
		o->digest = (o->digest ^ b[i]) * 16777619u;
}

static int on_head(void *arg, struct http1_request *r)
{
	struct owner *o = arg;
	if (http1_request(o->p) != r)
		abort();
	mix(o, r->method, strlen(r->method));
	mix(o, r->target.data ? r->target.data : "", r->target.len);
	for (size_t i = 0; i < r->nheaders; i++) {
		if (strlen(r->headers[i].name) != r->headers[i].namelen ||
		    strlen(r->headers[i].value) > r->headers[i].valuelen)
			abort();
		mix(o, r->headers[i].name, r->headers[i].namelen + 1);
		mix(o, r->headers[i].value, r->headers[i].valuelen + 1);
	}
	int flags[] = {r->version_major,   r->version_minor, r->chunked, r->keep_alive,
		       r->expect_continue, r->upgrade,	     r->head,	 (int)r->content_length};
	mix(o, flags, sizeof(flags));
	return r->target.len > 1 && (unsigned char)r->target.data[1] == o->refuse ? 403 : 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
	struct owner *o = arg;
	if (!http1_request(o->p))
		abort();
	mix(o, data, len);
	return 0;
}

static int on_complete(void *arg)
{
	struct owner *o = arg;
	mix(o, "|", 1);
	return 0;
}

static const struct http1_callbacks cbs = {on_head, on_body, on_complete};
static const struct http1_limits lim = {
	.max_uri = 32, .max_header_bytes = 128, .max_headers = 6, .max_body = 64};

/* Parses data in pieces (sizes from seed; 0: whole). Returns the digest; *status the refusal. */
static uint32_t run(const uint8_t *data, size_t size, uint32_t seed, int *status)
{
	struct owner o = {.digest = 2166136261u, .refuse = '!'};
	o.p = http1_new(&lim, &cbs, &o);
	size_t off = 0;
	int idle = 0;
	*status = 0;
	while (off < size && idle < 3) {
		size_t n = size - off;
		if (seed) {
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % 9;
			n = n < piece ? n : piece;
		}
		ssize_t k = http1_feed(o.p, (const char *)data + off, n, status);
		if (k < 0)
			break;
		if ((size_t)k > n)
			abort();
		off += (size_t)k;
		if (http1_done(o.p)) {
			if (!http1_request(o.p))
				abort();
			http1_next(o.p);
			idle = 0;
		} else if ((size_t)k < n) {
			idle++; /* paused (an upgrade): stop like the server would */
		}
		(void)http1_busy(o.p);
		(void)http1_error(o.p);
	}
	mix(&o, status, sizeof(*status));
	http1_free(o.p);
	return o.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int s1, s2;
	uint32_t whole = run(data, size, 0, &s1);
	uint32_t split = run(data, size, size ? data[0] + 1u : 1u, &s2);
	/* The same requests, whatever the pieces. Both refuse or neither does; the status may
	 * differ (a limit can be noticed before or after a syntax error, depending on where the
	 * pieces end), so only refusal-free parses must digest the same. */
	if ((s1 == 0) != (s2 == 0))
		abort();
	if (!s1 && whole != split)
		abort();
	return 0;
}
