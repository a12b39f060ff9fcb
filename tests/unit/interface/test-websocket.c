/* interface/websocket.c alone: client frames fed whole and one byte at a time, the server's
 * frames (ws_frame widths), the handshake key (RFC 6455 §1.3 example) and the UTF-8 check;
 * permessage-deflate (RFC 7692): the negotiation, compressed frames fed whole, byte by byte and
 * cut anywhere, bad streams and bombs, and a message compressed once for many connections. The
 * compressed input is made with zlib here, not with interface/deflate.c. */
#include "interface/websocket.h"
#include "interface/deflate.h"
#include "tests/lib/test.h"
#include "tests/lib/wsframe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

/* --- What a ws reports --------------------------------------------------------------------- */

#define MAX_MSGS 16

struct result {
	struct buf out; /* everything the ws wrote */
	int nmsgs;
	bool text[MAX_MSGS];
	struct buf msg[MAX_MSGS];
	int activity;
	int fail_writes; /* write returns -1 when set */
	int feed_rc;	 /* -1 if any ws_feed returned -1 */
	bool close_sent, close_received, finished;
	int code_received, code_sent;
};

static void on_message(void *owner, bool text, const uint8_t *data, size_t len)
{
	struct result *r = owner;
	if (r->nmsgs < MAX_MSGS) {
		r->text[r->nmsgs] = text;
		buf_append(&r->msg[r->nmsgs], data, len);
	}
	r->nmsgs++;
}

static void on_activity(void *owner)
{
	struct result *r = owner;
	r->activity++;
}

static int on_write(void *owner, const void *data, size_t len)
{
	struct result *r = owner;
	if (r->fail_writes)
		return -1;
	buf_append(&r->out, data, len);
	return 0;
}

static const struct ws_callbacks callbacks = {
	.on_message = on_message, .on_activity = on_activity, .write = on_write};
static const struct ws_config cfg_1m = {1 << 20, 128, 6};

static void result_init(struct result *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->out);
	for (int i = 0; i < MAX_MSGS; i++)
		buf_init(&r->msg[i]);
}

static void result_fini(struct result *r)
{
	buf_fini(&r->out);
	for (int i = 0; i < MAX_MSGS; i++)
		buf_fini(&r->msg[i]);
}

/* Feeds input to a new ws: with split, as [0, split) and [split, len); else step bytes per
 * ws_feed call (0: all at once). */
static int run_deflate; /* the window the ws of run_parts negotiated, 0: none */

static void run_parts(const struct buf *in, size_t max_message, size_t step, size_t split,
		      struct result *r)
{
	result_init(r);
	struct ws_config cfg = {max_message, 128, 6};
	struct ws *w = ws_new(&cfg, run_deflate, &callbacks, r);
	CHECK(w != NULL);
	if (!w)
		return;
	size_t n = step ? step : in->len;
	for (size_t off = 0; off < in->len; off += n) {
		size_t k = in->len - off < n ? in->len - off : n;
		if (split && off < split && off + k > split)
			k = split - off;
		if (ws_feed(w, (const uint8_t *)in->data + off, k) < 0)
			r->feed_rc = -1;
		if (k < n && off + k == split)
			off -= n - k; /* the next part starts at split */
	}
	if (in->len == 0 && ws_feed(w, (const uint8_t *)"", 0) < 0)
		r->feed_rc = -1;
	r->close_sent = ws_close_sent(w);
	r->close_received = ws_close_received(w);
	r->finished = ws_finished(w);
	r->code_received = ws_close_code_received(w);
	r->code_sent = ws_close_code_sent(w);
	ws_free(w);
}

static void run(const struct buf *in, size_t max_message, size_t step, struct result *r)
{
	run_parts(in, max_message, step, 0, r);
}

/* --- Frames from the client (tests/lib/wsframe.h) ------------------------------------------ */

#define MASKED 1
#define UNMASKED 0

/* --- Frames from the server ---------------------------------------------------------------- */

struct sframe {
	int opcode;
	bool fin;
	const uint8_t *data;
	size_t len;
};

/* Splits the server's output into frames; returns how many (at most max), -1 if malformed (a
 * server frame is never masked and never has RSV bits). */
static int sframes(const struct buf *out, struct sframe *f, int max)
{
	const uint8_t *p = (const uint8_t *)out->data;
	size_t n = out->len, off = 0;
	int k = 0;
	while (off < n) {
		if (n - off < 2 || (p[off] & 0x70) || (p[off + 1] & 0x80))
			return -1;
		size_t len = p[off + 1] & 0x7f, hl = 2;
		if (len == 126) {
			if (n - off < 4)
				return -1;
			len = (size_t)p[off + 2] << 8 | p[off + 3];
			hl = 4;
		} else if (len == 127) {
			if (n - off < 10)
				return -1;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[off + 2 + i];
			hl = 10;
		}
		if (n - off - hl < len)
			return -1;
		if (k < max) {
			f[k].opcode = p[off] & 0x0f;
			f[k].fin = p[off] & 0x80;
			f[k].data = p + off + hl;
			f[k].len = len;
		}
		k++;
		off += hl + len;
	}
	return k;
}

/* The output is exactly one close frame with this code (and no reason). */
static void check_closed_with(const struct result *r, int code, const char *what)
{
	struct sframe f[8];
	int n = sframes(&r->out, f, 8);
	int got =
		n == 1 && f[0].opcode == 8 && f[0].len >= 2 ? f[0].data[0] << 8 | f[0].data[1] : -1;
	if (n != 1 || got != code) {
		test_fail(__FILE__, __LINE__,
			  "%s: expected one close frame %d, got %d frames, code %d", what, code, n,
			  got);
		test_hexdump("  output", r->out.data, r->out.len);
	}
	test_checks++;
	CHECK(r->close_sent);
	CHECK_EQ(r->code_sent, code);
}

/* Runs input whole and byte by byte and expects a protocol-error close (code) and no message. */
static void expect_close(const struct buf *in, size_t max, int code, int nmsgs, const char *what)
{
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(in, max, step, &r);
		check_closed_with(&r, code, what);
		if (r.nmsgs != nmsgs)
			fprintf(stderr, "  (%s, step %zu)\n", what, step);
		CHECK_EQ(r.nmsgs, nmsgs);
		result_fini(&r);
	}
}

/* --- Tests ---------------------------------------------------------------------------------- */

static void test_accept_key(void)
{
	char out[29];
	const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
	ws_accept_key(key, strlen(key), out);
	CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_frame_widths(void)
{
	static const struct {
		size_t len;
		size_t hl;
		uint8_t head[10];
	} cases[] = {
		{0, 2, {0x81, 0}},
		{1, 2, {0x81, 1}},
		{125, 2, {0x81, 125}},
		{126, 4, {0x81, 126, 0, 126}},
		{65535, 4, {0x81, 126, 0xff, 0xff}},
		{65536, 10, {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{70000, 10, {0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70}},
	};
	uint8_t *data = malloc(70000);
	for (size_t i = 0; i < 70000; i++)
		data[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int text = 0; text <= 1; text++) {
			struct buf b;
			buf_init(&b);
			ws_frame(&b, text, data, cases[i].len);
			uint8_t head[10];
			memcpy(head, cases[i].head, cases[i].hl);
			head[0] = text ? 0x81 : 0x82;
			CHECK_EQ(b.len, cases[i].hl + cases[i].len);
			CHECK_MEM(b.data, cases[i].hl, head, cases[i].hl);
			if (b.len == cases[i].hl + cases[i].len)
				CHECK_MEM(b.data + cases[i].hl, cases[i].len, data, cases[i].len);
			buf_fini(&b);
		}
	}
	/* Appends to what is there. */
	struct buf b;
	buf_init(&b);
	buf_append(&b, "xy", 2);
	ws_frame(&b, false, "abc", 3);
	CHECK_MEM(b.data, b.len,
		  "xy\x82\x03"
		  "abc",
		  7);
	buf_fini(&b);
	free(data);
}

static void test_utf8(void)
{
	static const struct {
		const char *s;
		size_t n;
		bool ok;
	} cases[] = {
		{"", 0, true},
		{"hello", 5, true},
		{"\x00", 1, true},
		{"\x7f", 1, true},
		{"\xc2\x80", 2, true},		/* U+0080 */
		{"\xc3\xa9t\xc3\xa9", 5, true}, /* été */
		{"\xdf\xbf", 2, true},		/* U+07FF */
		{"\xe0\xa0\x80", 3, true},	/* U+0800 */
		{"\xe2\x82\xac", 3, true},	/* € */
		{"\xed\x9f\xbf", 3, true},	/* U+D7FF */
		{"\xee\x80\x80", 3, true},	/* U+E000 */
		{"\xef\xbf\xbf", 3, true},	/* U+FFFF */
		{"\xf0\x90\x80\x80", 4, true},	/* U+10000 */
		{"\xf0\x9f\x98\x80", 4, true},	/* 😀 */
		{"\xf4\x8f\xbf\xbf", 4, true},	/* U+10FFFF */
		{"\x80", 1, false},		/* lone continuation */
		{"\xbf", 1, false},
		{"\xc0\x80", 2, false},		/* overlong NUL */
		{"\xc1\xbf", 2, false},		/* overlong */
		{"\xe0\x80\x80", 3, false},	/* overlong */
		{"\xe0\x9f\xbf", 3, false},	/* overlong U+07FF */
		{"\xf0\x80\x80\x80", 4, false}, /* overlong */
		{"\xf0\x8f\xbf\xbf", 4, false}, /* overlong U+FFFF */
		{"\xed\xa0\x80", 3, false},	/* U+D800 surrogate */
		{"\xed\xbf\xbf", 3, false},	/* U+DFFF surrogate */
		{"\xf4\x90\x80\x80", 4, false}, /* U+110000 */
		{"\xf5\x80\x80\x80", 4, false},
		{"\xf8\x88\x80\x80\x80", 5, false}, /* 5-byte form */
		{"\xfe", 1, false},
		{"\xff", 1, false},
		{"\xc3", 1, false}, /* truncated */
		{"\xe2\x82", 2, false},
		{"\xf0\x9f\x98", 3, false},
		{"a\xc3(", 3, false}, /* bad continuation */
		{"\xe2\x28\xa1", 3, false},
		{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
		 "edited",
		 19, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = ws_valid_utf8((const uint8_t *)cases[i].s, cases[i].n);
		if (got != cases[i].ok)
			test_hexdump("  utf8 case", cases[i].s, cases[i].n);
		CHECK_EQ(got, cases[i].ok);
	}
}

static void test_messages(void)
{
	static const size_t lens[] = {0, 1, 125, 126, 65535, 65536, 100000};
	uint8_t *data = malloc(100000);
	for (size_t i = 0; i < 100000; i++)
		data[i] = (uint8_t)('a' + i % 26);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int text = 0; text <= 1; text++) {
			struct buf in;
			buf_init(&in);
			wsframe_append(&in, text ? 0x81 : 0x82, MASKED, data, lens[i]);
			wsframe_append(&in, 0x81, MASKED, "next", 4);
			for (size_t step = 0; step <= 1; step++) {
				struct result r;
				run(&in, 1 << 20, step, &r);
				CHECK_EQ(r.feed_rc, 0);
				CHECK_EQ(r.nmsgs, 2);
				CHECK_EQ(r.text[0], text);
				CHECK_MEM(r.msg[0].data, r.msg[0].len, data, lens[i]);
				CHECK(r.text[1]);
				CHECK_MEM(r.msg[1].data, r.msg[1].len, "next", 4);
				CHECK_EQ(r.out.len, 0);
				CHECK_EQ(r.activity, 2);
				CHECK(!r.close_sent);
				CHECK(!r.finished);
				result_fini(&r);
			}
			buf_fini(&in);
		}
	}
	free(data);
}

static void test_fragments_and_ping(void)
{
	struct buf in;
	buf_init(&in);
	wsframe_append(&in, 0x01, MASKED, "Hel", 3);	      /* text, not FIN */
	wsframe_append(&in, 0x89, MASKED, "ping-data", 9);    /* ping in between */
	wsframe_append(&in, 0x00, MASKED, "lo, ", 4);	      /* continuation */
	wsframe_append(&in, 0x8a, MASKED, "unsolicited", 11); /* pong: ignored */
	wsframe_append(&in, 0x80, MASKED, "w\xc3\xb6rld", 6); /* final continuation */
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.feed_rc, 0);
		CHECK_EQ(r.nmsgs, 1);
		CHECK(r.text[0]);
		CHECK_MEM(r.msg[0].data, r.msg[0].len, "Hello, w\xc3\xb6rld", 13);
		struct sframe f[4];
		int n = sframes(&r.out, f, 4);
		CHECK_EQ(n, 1);
		if (n == 1) {
			CHECK_EQ(f[0].opcode, 0xa);
			CHECK(f[0].fin);
			CHECK_MEM(f[0].data, f[0].len, "ping-data", 9);
		}
		CHECK_EQ(r.activity, 5);
		CHECK(!r.close_sent);
		result_fini(&r);
	}
	/* Binary in fragments, an empty ping and a 125-byte ping. */
	buf_reset(&in);
	uint8_t big[125];
	memset(big, 'p', sizeof(big));
	wsframe_append(&in, 0x02, MASKED, "\x00\x01", 2);
	wsframe_append(&in, 0x89, MASKED, "", 0);
	wsframe_append(&in, 0x00, MASKED, "", 0);
	wsframe_append(&in, 0x89, MASKED, big, 125);
	wsframe_append(&in, 0x80, MASKED, "\xff", 1);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.nmsgs, 1);
		CHECK(!r.text[0]);
		CHECK_MEM(r.msg[0].data, r.msg[0].len, "\x00\x01\xff", 3);
		struct sframe f[4];
		int n = sframes(&r.out, f, 4);
		CHECK_EQ(n, 2);
		if (n == 2) {
			CHECK_EQ(f[0].opcode, 0xa);
			CHECK_EQ(f[0].len, 0);
			CHECK_EQ(f[1].opcode, 0xa);
			CHECK_MEM(f[1].data, f[1].len, big, 125);
		}
		result_fini(&r);
	}
	buf_fini(&in);
}

static void test_protocol_errors(void)
{
	struct buf in;
	buf_init(&in);

	wsframe_append(&in, 0x81, UNMASKED, "hi", 2);
	expect_close(&in, 1 << 20, 1002, 0, "unmasked frame");

	for (int rsv = 1; rsv <= 7; rsv++) {
		buf_reset(&in);
		wsframe_append(&in, (uint8_t)(0x81 | rsv << 4), MASKED, "hi", 2);
		expect_close(&in, 1 << 20, 1002, 0, "reserved bits");
	}
	static const int opcodes[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
	for (size_t i = 0; i < sizeof(opcodes) / sizeof(opcodes[0]); i++) {
		buf_reset(&in);
		wsframe_append(&in, (uint8_t)(0x80 | opcodes[i]), MASKED, "hi", 2);
		expect_close(&in, 1 << 20, 1002, 0, "reserved opcode");
	}
	uint8_t big[126];
	memset(big, 'x', sizeof(big));
	buf_reset(&in);
	wsframe_append(&in, 0x89, MASKED, big, 126);
	expect_close(&in, 1 << 20, 1002, 0, "ping of 126 bytes");
	buf_reset(&in);
	wsframe_append(&in, 0x09, MASKED, "x", 1);
	expect_close(&in, 1 << 20, 1002, 0, "fragmented ping");
	buf_reset(&in);
	wsframe_append(&in, 0x08, MASKED, "\x03\xe8", 2);
	expect_close(&in, 1 << 20, 1002, 0, "fragmented close");
	buf_reset(&in);
	wsframe_append(&in, 0x80, MASKED, "x", 1);
	expect_close(&in, 1 << 20, 1002, 0, "continuation without start");
	buf_reset(&in);
	wsframe_append(&in, 0x00, MASKED, "x", 1);
	expect_close(&in, 1 << 20, 1002, 0, "unfinished continuation without start");
	buf_reset(&in);
	wsframe_append(&in, 0x01, MASKED, "a", 1);
	wsframe_append(&in, 0x81, MASKED, "b", 1);
	expect_close(&in, 1 << 20, 1002, 0, "new text inside a fragmented message");

	/* The message before the error is delivered. */
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "ok", 2);
	wsframe_append(&in, 0x83, MASKED, "x", 1);
	wsframe_append(&in, 0x81, MASKED, "never", 5);
	expect_close(&in, 1 << 20, 1002, 1, "error after one message");
	buf_fini(&in);
}

static void test_utf8_frames(void)
{
	struct buf in;
	buf_init(&in);
	wsframe_append(&in, 0x81, MASKED, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.nmsgs, 1);
		CHECK_MEM(r.msg[0].data, r.msg[0].len,
			  "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
		CHECK(!r.close_sent);
		result_fini(&r);
	}
	/* A code point split across fragments is fine. */
	buf_reset(&in);
	wsframe_append(&in, 0x01, MASKED, "\xf0\x9f", 2);
	wsframe_append(&in, 0x00, MASKED, "\x98", 1);
	wsframe_append(&in, 0x80, MASKED, "\x80!", 2);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.nmsgs, 1);
		CHECK_MEM(r.msg[0].data, r.msg[0].len, "\xf0\x9f\x98\x80!", 5);
		CHECK(!r.close_sent);
		result_fini(&r);
	}
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "ab\xc0\x80", 4);
	expect_close(&in, 1 << 20, 1007, 0, "invalid UTF-8");
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "\xed\xa0\x80", 3);
	expect_close(&in, 1 << 20, 1007, 0, "surrogate");
	buf_reset(&in);
	wsframe_append(&in, 0x01, MASKED, "\xf0\x9f", 2);
	wsframe_append(&in, 0x80, MASKED, "\x28", 1);
	expect_close(&in, 1 << 20, 1007, 0, "invalid UTF-8 split across fragments");
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "\xe2\x82", 2);
	expect_close(&in, 1 << 20, 1007, 0, "truncated UTF-8");
	/* Binary is not checked. */
	buf_reset(&in);
	wsframe_append(&in, 0x82, MASKED, "\xc0\x80\xff", 3);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.nmsgs, 1);
		CHECK(!r.close_sent);
		result_fini(&r);
	}
	buf_fini(&in);
}

static void test_close(void)
{
	struct buf in;
	buf_init(&in);
	static const int echoed[] = {1000, 1001, 1002, 1003, 1007, 1008,
				     1009, 1010, 1011, 3000, 4999};
	for (size_t i = 0; i < sizeof(echoed) / sizeof(echoed[0]); i++) {
		buf_reset(&in);
		wsframe_close(&in, echoed[i], "bye", 3);
		wsframe_append(&in, 0x81, MASKED, "after close", 11); /* ignored */
		for (size_t step = 0; step <= 1; step++) {
			struct result r;
			run(&in, 1 << 20, step, &r);
			check_closed_with(&r, echoed[i], "close echoed");
			CHECK(r.close_received);
			CHECK_EQ(r.code_received, echoed[i]);
			CHECK(r.finished);
			CHECK_EQ(r.nmsgs, 0);
			result_fini(&r);
		}
	}
	/* A close without a code: answered, and reported as 1005. */
	buf_reset(&in);
	wsframe_append(&in, 0x88, MASKED, "", 0);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		struct sframe f[4];
		int n = sframes(&r.out, f, 4);
		CHECK_EQ(n, 1);
		if (n == 1)
			CHECK_EQ(f[0].opcode, 8);
		CHECK(r.close_received);
		CHECK_EQ(r.code_received, 1005);
		CHECK(r.finished);
		result_fini(&r);
	}
	static const int invalid[] = {0,    999,  1004, 1005, 1006, 1012, 1013, 1014,
				      1015, 1016, 1100, 2000, 2999, 5000, 65535};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		/* 1012-1014 are registered by IANA since; accepting them is allowed too. */
		if (invalid[i] >= 1012 && invalid[i] <= 1014)
			continue;
		buf_reset(&in);
		wsframe_close(&in, invalid[i], "", 0);
		char what[64];
		snprintf(what, sizeof(what), "close code %d", invalid[i]);
		expect_close(&in, 1 << 20, 1002, 0, what);
	}
	buf_reset(&in);
	wsframe_append(&in, 0x88, MASKED, "\x03", 1);
	expect_close(&in, 1 << 20, 1002, 0, "close with a 1-byte payload");
	/* A close reason that is not UTF-8: 1002 (Autobahn 7.5.1 also accepts 1007), never an
	 * echo of the reason. */
	buf_reset(&in);
	wsframe_close(&in, 1000, "ok\xff\xfe", 4);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		struct sframe f[4];
		int n = sframes(&r.out, f, 4);
		int got = n == 1 && f[0].opcode == 8 && f[0].len >= 2
				  ? f[0].data[0] << 8 | f[0].data[1]
				  : -1;
		if (got != 1002 && got != 1007) {
			test_fail(__FILE__, __LINE__,
				  "close reason not UTF-8 (step %zu): close code %d, expected 1002 "
				  "or 1007",
				  step, got);
			test_hexdump("  output", r.out.data, r.out.len);
		}
		test_checks++;
		result_fini(&r);
	}
	buf_reset(&in);
	wsframe_close(&in, 1000, "\xce\xba\xe1\xbd\xb9", 5);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		check_closed_with(&r, 1000, "close with UTF-8 reason");
		result_fini(&r);
	}
	buf_fini(&in);
}

static void test_max_message(void)
{
	uint8_t data[300];
	memset(data, 'm', sizeof(data));
	struct buf in;
	buf_init(&in);
	/* Exactly the limit is fine. */
	wsframe_append(&in, 0x81, MASKED, data, 200);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 200, step, &r);
		CHECK_EQ(r.nmsgs, 1);
		CHECK(!r.close_sent);
		result_fini(&r);
	}
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "first", 5);
	wsframe_append(&in, 0x82, MASKED, data, 201);
	expect_close(&in, 200, 1009, 1, "message over the limit");
	buf_reset(&in);
	wsframe_append(&in, 0x01, MASKED, data, 150);
	wsframe_append(&in, 0x80, MASKED, data, 51);
	expect_close(&in, 200, 1009, 0, "fragmented message over the limit");
	buf_fini(&in);
}

static void test_send_close_ping(void)
{
	struct result r;
	result_init(&r);
	struct ws *w = ws_new(&cfg_1m, 0, &callbacks, &r);
	CHECK_EQ(ws_send(w, true, "hi", 2), 0);
	CHECK_EQ(ws_send(w, false, "\x01", 1), 0);
	struct ws_message pre;
	ws_message_init(&pre, &cfg_1m, true, "pre", 3);
	CHECK_EQ(ws_send_message(w, &pre), 0);
	ws_ping(w);
	CHECK_MEM(r.out.data, r.out.len, "\x81\x02hi\x82\x01\x01\x81\x03pre\x89\x06laurel", 20);
	buf_reset(&r.out);

	/* A pong to our ping counts as activity. */
	struct buf in;
	buf_init(&in);
	wsframe_append(&in, 0x8a, MASKED, "laurel", 6);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK_EQ(r.activity, 1);
	CHECK_EQ(r.out.len, 0);

	ws_close(w, 4001);
	ws_close(w, 1000); /* idempotent */
	CHECK_MEM(r.out.data, r.out.len, "\x88\x02\x0f\xa1", 4);
	CHECK(ws_close_sent(w));
	CHECK_EQ(ws_close_code_sent(w), 4001);
	CHECK(!ws_finished(w));
	CHECK_EQ(ws_send(w, true, "late", 4), -1);
	CHECK_EQ(ws_send_message(w, &pre), -1);
	buf_reset(&r.out);
	ws_ping(w); /* nothing after a close */
	CHECK_EQ(r.out.len, 0);

	/* The client answers: done. */
	buf_reset(&in);
	wsframe_close(&in, 4001, "", 0);
	ws_feed(w, (const uint8_t *)in.data, in.len);
	CHECK(ws_close_received(w));
	CHECK_EQ(ws_close_code_received(w), 4001);
	CHECK(ws_finished(w));
	CHECK_EQ(r.out.len, 0);
	ws_free(w);
	ws_free(NULL);

	/* No close frame came at all. */
	w = ws_new(&cfg_1m, 0, &callbacks, &r);
	CHECK_EQ(ws_close_code_received(w), 1006);
	ws_free(w);
	ws_message_fini(&pre);
	buf_fini(&in);
	result_fini(&r);
}

/* An idle connection holds no wslay context: none until bytes arrive, and it is given back
 * when the keepalive ping goes out (or a dormant connection gets only control frames), but never
 * in the middle of a frame or a fragmented message, nor once a close is under way. */
static void test_dormant(void)
{
	struct result r;
	result_init(&r);
	struct ws *w = ws_new(&cfg_1m, 0, &callbacks, &r);
	struct buf in;
	buf_init(&in);
	CHECK(ws_dormant(w));
	CHECK(!ws_close_sent(w) && !ws_close_received(w) && !ws_finished(w));
	CHECK_EQ(ws_close_code_sent(w), 1006);
	CHECK_EQ(ws_send(w, true, "hi", 2), 0); /* sending data needs no context */
	CHECK(ws_dormant(w));

	wsframe_append(&in, 0x81, MASKED, "one", 3);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK(!ws_dormant(w)); /* data: awake until quiet */
	ws_ping(w);
	CHECK(ws_dormant(w));
	/* The pong alone: back to sleep. */
	buf_reset(&in);
	wsframe_append(&in, 0x8a, MASKED, "laurel", 6);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK(ws_dormant(w));
	/* A client ping is answered, and it goes back to sleep. */
	buf_reset(&r.out);
	buf_reset(&in);
	wsframe_append(&in, 0x89, MASKED, "p", 1);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK_MEM(r.out.data, r.out.len, "\x8a\x01p", 3);
	CHECK(ws_dormant(w));

	/* A fragmented message across a ping: the context stays until it ends. */
	buf_reset(&in);
	wsframe_append(&in, 0x01, MASKED, "frag", 4);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	ws_ping(w);
	CHECK(!ws_dormant(w));
	buf_reset(&in);
	wsframe_append(&in, 0x80, MASKED, "ment", 4);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	ws_ping(w);
	CHECK(ws_dormant(w));
	/* Half a frame across a ping: likewise. */
	buf_reset(&in);
	wsframe_append(&in, 0x82, MASKED, "0123456789", 10);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, 9), 0);
	ws_ping(w);
	CHECK(!ws_dormant(w));
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data + 9, in.len - 9), 0);
	ws_ping(w);
	CHECK(ws_dormant(w));
	/* Only a partial header while dormant: kept. */
	buf_reset(&in);
	wsframe_append(&in, 0x81, MASKED, "two", 3);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, 1), 0);
	CHECK(!ws_dormant(w));
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data + 1, in.len - 1), 0);
	CHECK_EQ(r.nmsgs, 4);
	if (r.nmsgs == 4) {
		CHECK_MEM(r.msg[0].data, r.msg[0].len, "one", 3);
		CHECK_MEM(r.msg[1].data, r.msg[1].len, "fragment", 8);
		CHECK_MEM(r.msg[2].data, r.msg[2].len, "0123456789", 10);
		CHECK_MEM(r.msg[3].data, r.msg[3].len, "two", 3);
	}
	ws_ping(w);
	CHECK(ws_dormant(w));

	/* A close from a dormant server, and the client's answer. */
	buf_reset(&r.out);
	ws_close(w, 1001);
	CHECK_MEM(r.out.data, r.out.len, "\x88\x02\x03\xe9", 4);
	ws_ping(w);
	CHECK(!ws_dormant(w));
	buf_reset(&in);
	wsframe_close(&in, 1001, "", 0);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK(ws_finished(w));
	CHECK_EQ(ws_close_code_received(w), 1001);
	ws_free(w);

	/* The client closes a dormant connection. */
	result_fini(&r);
	result_init(&r);
	w = ws_new(&cfg_1m, 0, &callbacks, &r);
	buf_reset(&in);
	wsframe_close(&in, 1000, "bye", 3);
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), 0);
	CHECK(!ws_dormant(w));
	CHECK(ws_close_received(w) && ws_close_sent(w) && ws_finished(w));
	CHECK_MEM(r.out.data, r.out.len, "\x88\x05\x03\xe8" "bye", 7);
	ws_free(w);
	buf_fini(&in);
	result_fini(&r);
}

static void test_write_failure(void)
{
	struct result r;
	result_init(&r);
	struct ws *w = ws_new(&cfg_1m, 0, &callbacks, &r);
	r.fail_writes = 1;
	CHECK_EQ(ws_send(w, true, "x", 1), -1);
	struct buf in;
	buf_init(&in);
	wsframe_append(&in, 0x89, MASKED, "p", 1); /* the pong cannot be written */
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), -1);
	CHECK(ws_finished(w));
	CHECK_EQ(ws_feed(w, (const uint8_t *)in.data, in.len), -1);
	ws_free(w);
	buf_fini(&in);
	result_fini(&r);
}

/* The same input cut in two at every point behaves as when given whole. */
static void check_splits(const struct buf *in, size_t max, const char *what)
{
	struct result whole;
	run(in, max, 0, &whole);
	for (size_t k = 1; k < in->len; k++) {
		struct result r;
		run_parts(in, max, 0, k, &r);
		bool same = r.nmsgs == whole.nmsgs && r.out.len == whole.out.len &&
			    memcmp(r.out.data, whole.out.data, r.out.len) == 0 &&
			    r.close_sent == whole.close_sent && r.finished == whole.finished;
		for (int i = 0; same && i < r.nmsgs && i < MAX_MSGS; i++)
			same = r.msg[i].len == whole.msg[i].len &&
			       memcmp(r.msg[i].data, whole.msg[i].data, r.msg[i].len) == 0;
		test_checks++;
		if (!same) {
			test_fail(__FILE__, __LINE__, "%s: cut at %zu of %zu differs from whole",
				  what, k, in->len);
			test_hexdump("  output whole", whole.out.data, whole.out.len);
			test_hexdump("  output cut  ", r.out.data, r.out.len);
		}
		result_fini(&r);
	}
	result_fini(&whole);
}

static void test_splits(void)
{
	struct buf in;
	buf_init(&in);
	uint8_t big[300];
	memset(big, 'b', sizeof(big));
	wsframe_append(&in, 0x81, MASKED, "hello", 5);
	wsframe_append(&in, 0x82, MASKED, big, 300);
	wsframe_append(&in, 0x01, MASKED, "\xce\xba\xe1", 3);
	wsframe_append(&in, 0x89, MASKED, "p", 1);
	wsframe_append(&in, 0x80, MASKED, "\xbd\xb9", 2);
	check_splits(&in, 1 << 20, "messages");
	/* A close with a UTF-8 reason: answered 1000 wherever TCP cuts it. */
	buf_reset(&in);
	wsframe_close(&in, 1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
	check_splits(&in, 1 << 20, "close with a UTF-8 reason");
	buf_reset(&in);
	wsframe_close(&in, 1000, "ok\xff\xfe", 4);
	check_splits(&in, 1 << 20, "close with a reason that is not UTF-8");
	buf_fini(&in);
}

/* --- permessage-deflate ----------------------------------------------------------------------- */

static void negotiates(const char *const *values, size_t n, int bits, const char *response,
		       const char *what)
{
	bool named;
	char resp[DEFLATE_RESPONSE_MAX] = "";
	int got = deflate_negotiate(values, n, &named);
	if (got)
		deflate_response(got, named, resp);
	if (got != bits || strcmp(resp, response ? response : "") != 0)
		test_fail(__FILE__, __LINE__, "%s: got %d \"%s\", want %d \"%s\"", what, got, resp,
			  bits, response ? response : "");
	test_checks++;
}

#define BASE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

static void test_negotiate(void)
{
	struct {
		const char *offer;
		int bits;
		const char *response;
	} cases[] = {
		{"permessage-deflate", 15, BASE},
		{"permessage-deflate; client_max_window_bits", 15, BASE}, /* Chromium's */
		{"permessage-deflate; client_max_window_bits=12", 15, BASE},
		{"permessage-deflate; server_no_context_takeover", 15, BASE},
		{"permessage-deflate; client_no_context_takeover; server_no_context_takeover", 15,
		 BASE},
		{"permessage-deflate; server_max_window_bits=10", 10,
		 BASE "; server_max_window_bits=10"},
		{"permessage-deflate; server_max_window_bits=15", 15,
		 BASE "; server_max_window_bits=15"},
		{"permessage-deflate; server_max_window_bits=\"9\"", 9,
		 BASE "; server_max_window_bits=9"},
		{"  Permessage-Deflate ;\tCLIENT_MAX_WINDOW_BITS = 15 ", 15, BASE},
		{",, permessage-deflate ,", 15, BASE},
		/* declined */
		{"", 0, NULL},
		{"x-webkit-deflate-frame", 0, NULL},
		{"permessage-deflate; server_max_window_bits=8", 0, NULL}, /* zlib cannot */
		{"permessage-deflate; server_max_window_bits", 0, NULL},
		{"permessage-deflate; server_max_window_bits=16", 0, NULL},
		{"permessage-deflate; server_max_window_bits=010", 0, NULL},
		{"permessage-deflate; server_max_window_bits=1234567890123", 0, NULL},
		{"permessage-deflate; client_max_window_bits=7", 0, NULL},
		{"permessage-deflate; client_max_window_bits=x", 0, NULL},
		{"permessage-deflate; server_no_context_takeover=1", 0, NULL},
		{"permessage-deflate; server_no_context_takeover; server_no_context_takeover", 0, NULL},
		{"permessage-deflate; mystery", 0, NULL},
		{"permessage-deflate; server_max_window_bits=\"9", 0, NULL},
		{"permessage-deflate x", 0, NULL},
		{"permessage-deflate; =1", 0, NULL},
		{";", 0, NULL},
		/* the first acceptable offer of a list */
		{"permessage-deflate; server_max_window_bits=8, permessage-deflate; "
		 "server_max_window_bits=11",
		 11, BASE "; server_max_window_bits=11"},
		{"foo; a=1, permessage-deflate", 15, BASE},
		{"permessage-deflate; bad, permessage-deflate", 15, BASE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		negotiates(&cases[i].offer, 1, cases[i].bits, cases[i].response, cases[i].offer);
	/* Several header lines: read in order; a broken line is skipped as a whole. */
	const char *lines[] = {"x-foo; q=\"a, b\"", "permessage-deflate; \"broken",
			       "permessage-deflate; server_max_window_bits=13"};
	negotiates(lines, 3, 13, BASE "; server_max_window_bits=13", "three header lines");
	negotiates(lines, 2, 0, NULL, "no acceptable line");
	negotiates(NULL, 0, 0, NULL, "no header");
}

/* Client-side compression, by zlib directly: one message, no context, the tail removed
 * (final: ends with a final block instead). */
static void zdeflate(struct buf *out, const void *data, size_t len, bool final)
{
	z_stream z = {0};
	CHECK_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	buf_reserve(out, deflateBound(&z, len) + 16);
	z.next_in = (Bytef *)(uintptr_t)data;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data + out->len;
	z.avail_out = (uInt)(out->cap - out->len - 1);
	int rc = deflate(&z, final ? Z_FINISH : Z_SYNC_FLUSH);
	CHECK(rc == Z_OK || rc == Z_STREAM_END);
	size_t n = (size_t)((char *)z.next_out - (out->data + out->len));
	if (!final) {
		CHECK(n >= 4 && memcmp(out->data + out->len + n - 4, "\0\0\xff\xff", 4) == 0);
		n -= 4;
	}
	out->len += n;
	out->data[out->len] = '\0';
	deflateEnd(&z);
}

static void zinflate(struct buf *out, const void *data, size_t len)
{
	z_stream z = {0};
	CHECK_EQ(inflateInit2(&z, -15), Z_OK);
	struct buf in;
	buf_init(&in);
	buf_append(&in, data, len);
	buf_append(&in, "\0\0\xff\xff", 4);
	buf_reserve(out, 1 << 20);
	z.next_in = (Bytef *)in.data;
	z.avail_in = (uInt)in.len;
	z.next_out = (Bytef *)out->data + out->len;
	z.avail_out = (uInt)(out->cap - out->len - 1);
	int rc = inflate(&z, Z_SYNC_FLUSH);
	CHECK(rc == Z_OK || rc == Z_STREAM_END);
	out->len = (size_t)((char *)z.next_out - out->data);
	out->data[out->len] = '\0';
	inflateEnd(&z);
	buf_fini(&in);
}

/* A compressed client frame (RSV1 when rsv1) of data compressed. */
static void zframe(struct buf *b, uint8_t b0, const void *data, size_t len, bool final)
{
	struct buf z;
	buf_init(&z);
	zdeflate(&z, data, len, final);
	wsframe_append(b, b0, MASKED, z.data, z.len);
	buf_fini(&z);
}

static const char prose[] =
	"The train went into the tunnel just as Ann was about to answer, and when it came out "
	"again the room had moved on: Bob had posted the minutes, Carol had asked who would "
	"bring the projector on Thursday. The train went into the tunnel again.";

static void test_deflate_input(void)
{
	struct buf in, z;
	buf_init(&in);
	buf_init(&z);
	run_deflate = 15;
	/* Compressed, plain, fragmented compressed (RSV1 on the first frame only) with a ping in
	 * the middle, a final block, binary, an empty message: whole, byte by byte, cut anywhere. */
	zframe(&in, 0xc1, prose, sizeof(prose) - 1, false);
	wsframe_append(&in, 0x81, MASKED, "plain", 5);
	zdeflate(&z, "fragmented \xce\xba\xe1\xbd\xb9", 16, false);
	wsframe_append(&in, 0x41, MASKED, z.data, 3);
	wsframe_append(&in, 0x89, MASKED, "p", 1);
	wsframe_append(&in, 0x80, MASKED, z.data + 3, z.len - 3);
	zframe(&in, 0xc1, "final block", 11, true);
	zframe(&in, 0xc2, "\x00\x01\x02\x00\x01\x02\x00\x01\x02", 9, false);
	/* An empty message, compressed (RFC 7692 §7.2.3.6). */
	wsframe_append(&in, 0xc1, MASKED, "\x00", 1);
	for (size_t step = 0; step <= 1; step++) {
		struct result r;
		run(&in, 1 << 20, step, &r);
		CHECK_EQ(r.nmsgs, 6);
		CHECK_MEM(r.msg[0].data, r.msg[0].len, prose, sizeof(prose) - 1);
		CHECK_MEM(r.msg[1].data, r.msg[1].len, "plain", 5);
		CHECK_MEM(r.msg[2].data, r.msg[2].len, "fragmented \xce\xba\xe1\xbd\xb9", 16);
		CHECK_MEM(r.msg[3].data, r.msg[3].len, "final block", 11);
		CHECK(!r.text[4]);
		CHECK_MEM(r.msg[4].data, r.msg[4].len, "\x00\x01\x02\x00\x01\x02\x00\x01\x02", 9);
		CHECK_EQ(r.msg[5].len, 0);
		CHECK(!r.close_sent && r.feed_rc == 0);
		result_fini(&r);
	}
	check_splits(&in, 1 << 20, "compressed messages");

	/* The limit is on the inflated size: exactly max is delivered, one byte more is 1009. */
	char big[1001];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = prose[i % (sizeof(prose) - 1)];
	buf_reset(&in);
	zframe(&in, 0xc1, big, 1000, false);
	struct result r;
	run(&in, 1000, 0, &r);
	CHECK_EQ(r.nmsgs, 1);
	CHECK_EQ(r.msg[0].len, 1000);
	result_fini(&r);
	buf_reset(&in);
	zframe(&in, 0xc1, big, 1001, false);
	expect_close(&in, 1000, 1009, 0, "inflated one byte over the limit");
	/* A bomb: 16 MiB of zeros in a few KiB, against a 64 KiB limit. */
	size_t bomb = 16 << 20;
	char *zeros = calloc(1, bomb);
	buf_reset(&in);
	zframe(&in, 0xc2, zeros, bomb, false);
	free(zeros);
	CHECK(in.len < 65536);
	expect_close(&in, 65536, 1009, 0, "a bomb");
	/* Data that does not compress comes out longer than it is: at the limit it is still
	 * taken (the limit is on the inflated size), and a plain message over it is still 1009. */
	uint8_t noise[4000];
	uint32_t x = 88172645u;
	for (size_t i = 0; i < sizeof(noise); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		noise[i] = (uint8_t)x;
	}
	buf_reset(&in);
	zframe(&in, 0xc2, noise, sizeof(noise), false);
	CHECK(in.len > sizeof(noise) + 6);
	run(&in, sizeof(noise), 0, &r);
	CHECK_EQ(r.nmsgs, 1);
	CHECK_MEM(r.msg[0].data, r.msg[0].len, noise, sizeof(noise));
	CHECK(!r.close_sent);
	result_fini(&r);
	buf_reset(&in);
	wsframe_append(&in, 0x82, MASKED, noise, sizeof(noise));
	expect_close(&in, sizeof(noise) - 1, 1009, 0, "a plain message over the limit (deflate)");
	/* A stored block that claims more than it carries: not a whole message. */
	buf_reset(&in);
	wsframe_append(&in, 0xc2, MASKED, "\x00\x64\x00\x9b\xff" "ab", 7);
	expect_close(&in, 1 << 20, 1007, 0, "a stored block cut short");
	/* Bad data, data after a final block, compressed invalid UTF-8. */
	buf_reset(&in);
	wsframe_append(&in, 0xc1, MASKED, "\xff\xfe\xfd", 3);
	expect_close(&in, 1 << 20, 1007, 0, "not deflate data");
	buf_reset(&in);
	buf_reset(&z);
	zdeflate(&z, "done", 4, true);
	buf_append(&z, "\x01\x02", 2);
	wsframe_append(&in, 0xc1, MASKED, z.data, z.len);
	expect_close(&in, 1 << 20, 1007, 0, "data after a final block");
	buf_reset(&in);
	zframe(&in, 0xc1, "ok \xc3\x28", 5, false);
	expect_close(&in, 1 << 20, 1007, 0, "compressed invalid UTF-8");
	/* RSV1 where it may not be. */
	buf_reset(&in);
	buf_reset(&z);
	zdeflate(&z, prose, 100, false);
	wsframe_append(&in, 0x41, MASKED, z.data, 4);
	wsframe_append(&in, 0xc0, MASKED, z.data + 4, z.len - 4);
	expect_close(&in, 1 << 20, 1002, 0, "RSV1 on a continuation");
	buf_reset(&in);
	wsframe_append(&in, 0xc9, MASKED, "p", 1);
	expect_close(&in, 1 << 20, 1002, 0, "RSV1 on a ping");
	buf_reset(&in);
	wsframe_append(&in, 0xa1, MASKED, "x", 1);
	expect_close(&in, 1 << 20, 1002, 0, "RSV2");
	run_deflate = 0;
	buf_reset(&in);
	zframe(&in, 0xc1, prose, 50, false);
	expect_close(&in, 1 << 20, 1002, 0, "RSV1 without the extension");
	buf_fini(&in);
	buf_fini(&z);
}

/* The frames of out: RSV1 set on each one compressed; payload inflated into msgs[i]. */
static int zsframes(const struct buf *out, bool *compressed, struct buf *msgs, int max)
{
	const uint8_t *p = (const uint8_t *)out->data;
	size_t n = out->len, off = 0;
	int k = 0;
	while (off < n && k < max) {
		size_t len = p[off + 1] & 0x7f, hl = 2;
		if (len == 126) {
			len = (size_t)p[off + 2] << 8 | p[off + 3];
			hl = 4;
		} else if (len == 127) {
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[off + 2 + i];
			hl = 10;
		}
		if ((p[off] & 0x30) || n - off - hl < len)
			return -1;
		compressed[k] = p[off] & 0x40;
		buf_reset(&msgs[k]);
		if (compressed[k])
			zinflate(&msgs[k], p + off + hl, len);
		else
			buf_append(&msgs[k], p + off + hl, len);
		k++;
		off += hl + len;
	}
	return k;
}

static void test_deflate_output(void)
{
	static const struct ws_config cfg = {1 << 20, 128, 3};
	struct result r[4];
	struct ws *w[4];
	int bits[4] = {15, 15, 10, 0};
	for (int i = 0; i < 4; i++) {
		result_init(&r[i]);
		w[i] = ws_new(&cfg, bits[i], &callbacks, &r[i]);
		CHECK_EQ(ws_deflate_bits(w[i]), bits[i]);
	}
	/* One message for four connections: compressed once per window size (15 and 10), the
	 * plain frame made once for the fourth. */
	struct ws_message m;
	ws_message_init(&m, &cfg, true, prose, sizeof(prose) - 1);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ws_send_message(w[i], &m), 0);
	CHECK_EQ(m.compressions, 2);
	CHECK_EQ(m.sent_compressed, 3);
	CHECK_MEM(r[0].out.data, r[0].out.len, r[1].out.data, r[1].out.len);
	CHECK(r[0].out.len < sizeof(prose) - 1);
	CHECK_EQ(ws_wire_out(w[3]), sizeof(prose) - 1);
	CHECK_EQ(m.wire_payload, ws_wire_out(w[0]) + ws_wire_out(w[1]) + ws_wire_out(w[2]) +
					 ws_wire_out(w[3]));
	ws_message_fini(&m);
	/* Under the threshold: plain for everyone. Random bytes that do not shrink: plain too. */
	ws_send(w[0], true, "short", 5);
	uint8_t noise[300];
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < sizeof(noise); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		noise[i] = (uint8_t)x;
	}
	ws_message_init(&m, &cfg, false, noise, sizeof(noise));
	CHECK_EQ(ws_send_message(w[0], &m), 0);
	CHECK_EQ(m.compressions, 1);
	CHECK_EQ(m.sent_compressed, 0);
	ws_message_fini(&m);
	/* A message of 100 KiB (a 64-bit length in its frame when plain). */
	size_t blen = 100 << 10;
	char *big = malloc(blen);
	for (size_t i = 0; i < blen; i++)
		big[i] = prose[(i * 7) % (sizeof(prose) - 1)];
	ws_send(w[0], true, big, blen);
	bool compressed[8];
	struct buf msgs[8];
	for (int i = 0; i < 8; i++)
		buf_init(&msgs[i]);
	int n = zsframes(&r[0].out, compressed, msgs, 8);
	CHECK_EQ(n, 4);
	CHECK(compressed[0] && !compressed[1] && !compressed[2] && compressed[3]);
	CHECK_MEM(msgs[0].data, msgs[0].len, prose, sizeof(prose) - 1);
	CHECK_MEM(msgs[1].data, msgs[1].len, "short", 5);
	CHECK_MEM(msgs[2].data, msgs[2].len, noise, sizeof(noise));
	CHECK_MEM(msgs[3].data, msgs[3].len, big, blen);
	n = zsframes(&r[2].out, compressed, msgs, 8);
	CHECK(n == 1 && compressed[0]);
	CHECK_MEM(msgs[0].data, msgs[0].len, prose, sizeof(prose) - 1);
	/* deflate.c inflates what it compressed, within the limit or not at all. */
	struct buf zb, back;
	buf_init(&zb);
	buf_init(&back);
	size_t zn = deflate_message(&zb, big, blen, 12, 9);
	CHECK(zn > 0 && zn < blen / 4);
	CHECK_EQ(deflate_inflate(&back, (const uint8_t *)zb.data, zb.len, blen), 0);
	CHECK_MEM(back.data, back.len, big, blen);
	buf_reset(&back);
	CHECK_EQ(deflate_inflate(&back, (const uint8_t *)zb.data, zb.len, blen - 1),
		 DEFLATE_TOO_BIG);
	CHECK(back.len <= blen);
	CHECK_EQ(deflate_message(&zb, big, blen, 8, 6), 0); /* a 256-byte window: refused */
	CHECK_EQ(deflate_message(&zb, big, blen, 15, 0), 0);
	buf_fini(&zb);
	buf_fini(&back);
	free(big);
	for (int i = 0; i < 8; i++)
		buf_fini(&msgs[i]);
	for (int i = 0; i < 4; i++) {
		ws_free(w[i]);
		result_fini(&r[i]);
	}
	deflate_thread_cleanup();
}

int main(void)
{
	test_accept_key();
	test_frame_widths();
	test_utf8();
	test_messages();
	test_fragments_and_ping();
	test_protocol_errors();
	test_utf8_frames();
	test_close();
	test_max_message();
	test_send_close_ping();
	test_dormant();
	test_write_failure();
	test_splits();
	test_negotiate();
	test_deflate_input();
	test_deflate_output();
	return test_done();
}
