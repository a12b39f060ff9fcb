/* RFC 6455 conformance of laurel-interface over raw sockets, after the Autobahn categories:
 * handshake refusals, frame lengths (7-, 16- and 64-bit), fragmentation with control frames in
 * between, reserved bits and opcodes, control frame rules, UTF-8, the close handshake and close
 * codes, message size limit, keep-alive against a client that never answers, and outbound
 * backpressure against a client that never reads. Every error case first sends a good message, so
 * the record of the responder (a Channels 1 consumer at the Redis level) shows that exactly the
 * messages before the error reached the application.
 *
 * Usage: test-ws-conformance RESPONDER INTERFACE */
#include "common/util.h"
#include "laurel/message.h"
#include "tests/integration/interface/harness.h"
#include "tests/lib/test.h"
#include "tests/lib/wsframe.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *responder_exe, *interface_exe;
static struct test_redis redis;
static struct proc responder;
static char record[600];
static struct iface main_if;

#define MAX_MESSAGE 70000

/* --- Frames -------------------------------------------------------------------------------- */

struct frame {
	int b0; /* first byte: FIN, RSV, opcode */
	int opcode;
	bool masked;
	struct buf payload;
};

static int ws_sendframe(struct client *c, uint8_t b0, bool masked, const void *data, size_t len)
{
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, b0, masked, data, len);
	int rc = client_send(c, b.data, b.len);
	buf_fini(&b);
	return rc;
}

static int send_text(struct client *c, const char *s)
{
	return ws_sendframe(c, 0x81, true, s, strlen(s));
}

static int send_close(struct client *c, int code, const void *reason, size_t rlen)
{
	struct buf b;
	buf_init(&b);
	wsframe_close(&b, code, reason, rlen);
	int rc = client_send(c, b.data, b.len);
	buf_fini(&b);
	return rc;
}

/* Reads one frame from the server. Returns 0, -1 on timeout, -2 if the connection ended first.
 * hlen: the header length seen (to check the length encoding). */
static int recv_frame(struct client *c, struct frame *f, size_t *hlen, int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		const uint8_t *p = (const uint8_t *)c->in.data;
		size_t n = c->in.len;
		if (n >= 2) {
			size_t len = p[1] & 0x7f, hl = 2;
			bool ok = true;
			if (len == 126) {
				hl = 4;
				ok = n >= 4;
				if (ok)
					len = (size_t)p[2] << 8 | p[3];
			} else if (len == 127) {
				hl = 10;
				ok = n >= 10;
				if (ok) {
					len = 0;
					for (int i = 0; i < 8; i++)
						len = len << 8 | p[2 + i];
				}
			}
			if (p[1] & 0x80)
				hl += 4;
			if (ok && n >= hl + len) {
				f->b0 = p[0];
				f->opcode = p[0] & 0x0f;
				f->masked = p[1] & 0x80;
				buf_init(&f->payload);
				buf_append(&f->payload, p + hl, len);
				if (hlen)
					*hlen = hl;
				buf_consume(&c->in, hl + len);
				return 0;
			}
		}
		int left = (int)(deadline - util_now_ms());
		if (left <= 0)
			return -1;
		ssize_t k = client_fill(c, left);
		if (k == 0)
			return -2;
		if (k < 0)
			return -1;
	}
}

/* Expects a data frame with exactly this payload. */
static bool expect_message(struct client *c, int opcode, const void *data, size_t len,
			   const char *what)
{
	struct frame f;
	int rc = recv_frame(c, &f, NULL, 5000);
	if (rc < 0) {
		test_fail(__FILE__, __LINE__, "%s: no frame (%s)", what,
			  rc == -1 ? "timeout" : "connection closed");
		return false;
	}
	bool ok = f.opcode == opcode && (f.b0 & 0xf0) == 0x80 && !f.masked &&
		  f.payload.len == len && memcmp(f.payload.data, data, len) == 0;
	test_checks++;
	if (!ok) {
		test_fail(__FILE__, __LINE__, "%s: got opcode %d (byte 0x%02x), %zu bytes", what,
			  f.opcode, f.b0, f.payload.len);
		test_hexdump("  got     ", f.payload.data, f.payload.len);
		test_hexdump("  expected", data, len);
	}
	buf_fini(&f.payload);
	return ok;
}

/* Expects a close frame with code (or alt, if not 0), then the end of the TCP connection. */
static void expect_close_or(struct client *c, int code, int alt, const char *what)
{
	struct frame f;
	int rc;
	/* Pongs and echoes may come first. */
	do {
		rc = recv_frame(c, &f, NULL, 8000);
		if (rc == 0 && f.opcode != 8)
			buf_fini(&f.payload);
	} while (rc == 0 && f.opcode != 8);
	if (rc < 0) {
		test_fail(__FILE__, __LINE__, "%s: no close frame (%s)", what,
			  rc == -1 ? "timeout" : "the connection ended without one");
		return;
	}
	int got = f.payload.len >= 2 ? (uint8_t)f.payload.data[0] << 8 | (uint8_t)f.payload.data[1]
				     : (f.payload.len == 0 ? 1005 : -1);
	test_checks++;
	if (got != code && (!alt || got != alt)) {
		test_fail(__FILE__, __LINE__, "%s: close code %d, expected %d", what, got, code);
		test_hexdump("  close payload", f.payload.data, f.payload.len);
	}
	buf_fini(&f.payload);
	test_checks++;
	if (!client_wait_eof(c, 8000))
		test_fail(__FILE__, __LINE__, "%s: TCP connection not closed after the close frame",
			  what);
}

static void expect_close(struct client *c, int code, const char *what)
{
	expect_close_or(c, code, 0, what);
}

/* --- Connections --------------------------------------------------------------------------- */

/* Opens a WebSocket on path; returns 0 after a 101 (the head consumed) or -1. */
static int ws_handshake(struct client *c, const char *path);

static int ws_open_on(struct client *c, int port, const char *path)
{
	if (client_tcp(c, "127.0.0.1", port) < 0)
		return -1;
	return ws_handshake(c, path);
}

/* The same with a small receive buffer set before connecting (a small TCP window). */
static int ws_open_small(struct client *c, int port, const char *path, int rcvbuf)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	c->fd = fd;
	buf_init(&c->in);
	c->eof = c->reset = false;
	return ws_handshake(c, path);
}

/* Sends a WebSocket handshake for path. */
static int send_handshake(struct client *c, const char *path)
{
	char req[512];
	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		 "Sec-WebSocket-Version: 13\r\n\r\n",
		 path);
	return client_sends(c, req);
}

static int ws_handshake(struct client *c, const char *path)
{
	send_handshake(c, path);
	int64_t deadline = util_now_ms() + 5000;
	char *end;
	while (!(end = memmem(c->in.data ? c->in.data : "", c->in.len, "\r\n\r\n", 4))) {
		int left = (int)(deadline - util_now_ms());
		if (left <= 0 || client_fill(c, left) <= 0)
			break;
	}
	if (!end || strncmp(c->in.data, "HTTP/1.1 101 ", 13) != 0) {
		test_fail(__FILE__, __LINE__, "handshake on %s failed: %.*s", path,
			  (int)(c->in.len < 200 ? c->in.len : 200), c->in.data ? c->in.data : "");
		client_close(c);
		return -1;
	}
	buf_consume(&c->in, (size_t)(end + 4 - c->in.data));
	return 0;
}

/* The reply channel the interface gave to connection c (from the record), or "". */
static void reply_of(struct client *c, char *out, size_t outlen)
{
	char needle[64];
	snprintf(needle, sizeof(needle), "\"client\":[\"127.0.0.1\",%d]", client_port(c));
	char *line = record_find(record, needle, 5000);
	record_reply_channel(line, out, outlen);
	free(line);
}

static int count_for(const char *channel, const char *reply)
{
	char needle[256];
	snprintf(needle, sizeof(needle), "{\"channel\":\"%s\",\"reply_channel\":\"%s\"", channel,
		 reply);
	return record_count(record, needle);
}

/* After an error close: exactly `sent` websocket.receive reached the application, and one
 * websocket.disconnect with order sent + 1. */
static void check_record(const char *reply, int sent, const char *what)
{
	char needle[300];
	snprintf(needle, sizeof(needle),
		 "{\"channel\":\"websocket.disconnect\",\"reply_channel\":\"%s\",", reply);
	char *line = record_find(record, needle, 3000);
	int n = count_for("websocket.receive", reply);
	if (n != sent)
		fprintf(stderr, "  (%s)\n", what);
	CHECK_EQ(n, sent);
	char order[32];
	snprintf(order, sizeof(order), "\"order\":%d}", sent + 1);
	if (!line || !strstr(line, order))
		test_fail(__FILE__, __LINE__, "%s: websocket.disconnect %s, expected %s", what,
			  line ? line : "(none)", order);
	test_checks++;
	free(line);
}

/* --- Handshake ----------------------------------------------------------------------------- */

static int handshake_status(const char *request, struct response *r)
{
	int status = http_once("127.0.0.1", main_if.port, request, r, 5000);
	return status;
}

static void test_handshake(void)
{
	struct response r;
	int st = handshake_status(
		"GET /hs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 8\r\n\r\n",
		&r);
	CHECK_EQ(st, 426);
	char *v = st > 0 ? response_header(&r, "sec-websocket-version") : NULL;
	CHECK_STR(v, "13");
	free(v);
	if (st > 0)
		response_free(&r);

	st = handshake_status(
		"GET /hs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		&r);
	CHECK_EQ(st, 426); /* no version at all */
	if (st > 0)
		response_free(&r);

	st = handshake_status("GET /hs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
			      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
			      &r);
	CHECK_EQ(st, 400); /* no key */
	if (st > 0)
		response_free(&r);

	st = handshake_status("GET /hs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
			      "Connection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"
			      "Sec-WebSocket-Version: 13\r\n\r\n",
			      &r);
	CHECK_EQ(st, 400); /* a key that is not 16 bytes */
	if (st > 0)
		response_free(&r);

	st = handshake_status(
		"POST /hs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
		&r);
	CHECK_EQ(st, 400);
	if (st > 0)
		response_free(&r);

	/* The good one, with the RFC's example key. */
	struct client c;
	if (ws_open_on(&c, main_if.port, "/hs") == 0) {
		send_close(&c, 1000, "", 0);
		expect_close(&c, 1000, "close after the handshake");
		client_close(&c);
	}
}

/* --- Framing ------------------------------------------------------------------------------- */

static void test_lengths(void)
{
	static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536};
	uint8_t *data = malloc(65536);
	for (size_t i = 0; i < 65536; i++)
		data[i] = (uint8_t)('a' + i % 26);
	struct client c;
	if (ws_open_on(&c, main_if.port, "/lengths") < 0) {
		free(data);
		return;
	}
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int text = 1; text >= 0; text--) {
			ws_sendframe(&c, text ? 0x81 : 0x82, true, data, lens[i]);
			struct frame f;
			size_t hl = 0;
			int rc = recv_frame(&c, &f, &hl, 5000);
			CHECK_EQ(rc, 0);
			if (rc < 0)
				break;
			size_t want_hl = lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10;
			if (f.payload.len != lens[i] || hl != want_hl)
				fprintf(stderr, "  (length %zu, text %d)\n", lens[i], text);
			CHECK_EQ(f.b0, text ? 0x81 : 0x82);
			CHECK_EQ(hl, want_hl);
			CHECK(!f.masked);
			CHECK_MEM(f.payload.data, f.payload.len, data, lens[i]);
			buf_fini(&f.payload);
		}
	}
	char reply[128];
	reply_of(&c, reply, sizeof(reply));
	send_close(&c, 1000, "", 0);
	expect_close(&c, 1000, "close after the lengths");
	check_record(reply, 14, "lengths");
	client_close(&c);
	free(data);
}

static void test_fragments(void)
{
	struct client c;
	if (ws_open_on(&c, main_if.port, "/fragments") < 0)
		return;
	ws_sendframe(&c, 0x01, true, "frag", 4);
	ws_sendframe(&c, 0x89, true, "between", 7); /* a ping between fragments */
	ws_sendframe(&c, 0x00, true, "ment", 4);
	ws_sendframe(&c, 0x8a, true, "unsolicited", 11); /* a pong: ignored */
	ws_sendframe(&c, 0x80, true, "ed", 2);
	expect_message(&c, 0xa, "between", 7, "pong to a ping between fragments");
	expect_message(&c, 0x1, "fragmented", 10, "the message of 3 fragments");
	/* Binary in fragments, with empty ones. */
	ws_sendframe(&c, 0x02, true, "", 0);
	ws_sendframe(&c, 0x00, true, "\x01\x02", 2);
	ws_sendframe(&c, 0x80, true, "", 0);
	expect_message(&c, 0x2, "\x01\x02", 2, "binary in fragments");
	/* Ping with a payload, an empty ping, a 125-byte ping. */
	ws_sendframe(&c, 0x89, true, "payload", 7);
	expect_message(&c, 0xa, "payload", 7, "pong with the ping's payload");
	ws_sendframe(&c, 0x89, true, "", 0);
	expect_message(&c, 0xa, "", 0, "pong to an empty ping");
	char big[125];
	memset(big, 'P', sizeof(big));
	ws_sendframe(&c, 0x89, true, big, sizeof(big));
	expect_message(&c, 0xa, big, sizeof(big), "pong to a 125-byte ping");
	/* An unsolicited pong changes nothing. */
	ws_sendframe(&c, 0x8a, true, "x", 1);
	send_text(&c, "after pong");
	expect_message(&c, 0x1, "after pong", 10, "echo after an unsolicited pong");
	char reply[128];
	reply_of(&c, reply, sizeof(reply));
	send_close(&c, 1000, "done", 4);
	expect_close(&c, 1000, "close after fragments");
	check_record(reply, 3, "fragments");
	client_close(&c);
}

/* Opens a connection, sends one good message (echoed), then bad (raw bytes), and expects a close
 * with code and only the good message in the record. */
static void expect_failure_or(const void *bad, size_t badlen, int code, int alt, const char *what)
{
	struct client c;
	if (ws_open_on(&c, main_if.port, "/bad") < 0)
		return;
	char reply[128];
	reply_of(&c, reply, sizeof(reply));
	send_text(&c, "good");
	expect_message(&c, 0x1, "good", 4, what);
	client_send(&c, bad, badlen);
	expect_close_or(&c, code, alt, what);
	check_record(reply, 1, what);
	client_close(&c);
}

static void expect_failure(const void *bad, size_t badlen, int code, const char *what)
{
	expect_failure_or(bad, badlen, code, 0, what);
}

static void fail_with_frame(uint8_t b0, bool masked, const void *data, size_t len, int code,
			    const char *what)
{
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, b0, masked, data, len);
	expect_failure(b.data, b.len, code, what);
	buf_fini(&b);
}

static void test_protocol_errors(void)
{
	fail_with_frame(0x81, false, "unmasked", 8, 1002, "unmasked client frame");
	for (int rsv = 1; rsv <= 7; rsv++) {
		char what[64];
		snprintf(what, sizeof(what), "RSV bits %d", rsv);
		fail_with_frame((uint8_t)(0x81 | rsv << 4), true, "rsv", 3, 1002, what);
	}
	static const int opcodes[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
	for (size_t i = 0; i < sizeof(opcodes) / sizeof(opcodes[0]); i++) {
		char what[64];
		snprintf(what, sizeof(what), "reserved opcode 0x%x", opcodes[i]);
		fail_with_frame((uint8_t)(0x80 | opcodes[i]), true, "op", 2, 1002, what);
	}
	char big[126];
	memset(big, 'x', sizeof(big));
	fail_with_frame(0x89, true, big, 126, 1002, "ping of 126 bytes");
	fail_with_frame(0x8a, true, big, 126, 1002, "pong of 126 bytes");
	fail_with_frame(0x09, true, "p", 1, 1002, "fragmented ping");
	fail_with_frame(0x08, true, "\x03\xe8", 2, 1002, "fragmented close");
	fail_with_frame(0x80, true, "cont", 4, 1002, "continuation without a start");
	fail_with_frame(0x00, true, "cont", 4, 1002, "unfinished continuation without a start");
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, 0x01, true, "a", 1);
	wsframe_append(&b, 0x81, true, "b", 1);
	expect_failure(b.data, b.len, 1002, "a new message inside a fragmented one");
	buf_fini(&b);
}

static void test_utf8_messages(void)
{
	struct client c;
	if (ws_open_on(&c, main_if.port, "/utf8") < 0)
		return;
	static const char kosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
	send_text(&c, kosme);
	expect_message(&c, 0x1, kosme, strlen(kosme), "valid multi-byte text");
	ws_sendframe(&c, 0x01, true, "\xf0\x9f", 2);
	ws_sendframe(&c, 0x00, true, "\x98", 1);
	ws_sendframe(&c, 0x80, true, "\x80!", 2);
	expect_message(&c, 0x1, "\xf0\x9f\x98\x80!", 5, "valid UTF-8 cut across fragments");
	send_text(&c, "\xf4\x8f\xbf\xbf");
	expect_message(&c, 0x1, "\xf4\x8f\xbf\xbf", 4, "U+10FFFF");
	send_close(&c, 1000, "", 0);
	expect_close(&c, 1000, "close after UTF-8");
	client_close(&c);

	fail_with_frame(0x81, true, "bad \xc0\x80", 6, 1007, "overlong UTF-8");
	fail_with_frame(0x81, true, "\xed\xa0\x80", 3, 1007, "UTF-16 surrogate");
	fail_with_frame(0x81, true, "\xf4\x90\x80\x80", 4, 1007, "above U+10FFFF");
	fail_with_frame(0x81, true, "\xe2\x82", 2, 1007, "truncated code point");
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, 0x01, true, "ok \xf0\x9f", 5);
	wsframe_append(&b, 0x80, true, "(", 1);
	expect_failure(b.data, b.len, 1007, "invalid UTF-8 across fragments");
	buf_fini(&b);
}

static void test_close(void)
{
	/* A clean close: answered with the same code, then the TCP connection ends. */
	static const int echoed[] = {1000, 1001, 1003, 1007, 1011, 3000, 4999};
	for (size_t i = 0; i < sizeof(echoed) / sizeof(echoed[0]); i++) {
		struct client c;
		if (ws_open_on(&c, main_if.port, "/close") < 0)
			continue;
		char reply[128];
		reply_of(&c, reply, sizeof(reply));
		send_close(&c, echoed[i], "bye", 3);
		char what[64];
		snprintf(what, sizeof(what), "client close %d", echoed[i]);
		expect_close(&c, echoed[i], what);
		char *line = record_find(record, reply, 3000);
		char needle[300];
		snprintf(needle, sizeof(needle),
			 "{\"channel\":\"websocket.disconnect\",\"reply_channel\":\"%s\",\"code\":%"
			 "d,"
			 "\"path\":\"/close\",\"order\":1}",
			 reply, echoed[i]);
		free(line);
		line = record_find(record, needle, 3000);
		if (!line)
			test_fail(__FILE__, __LINE__, "no record line %s", needle);
		test_checks++;
		free(line);
		client_close(&c);
	}
	static const int invalid[] = {0,    999,  1004, 1005, 1006, 1016,
				      1100, 2000, 2999, 5000, 65535};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		uint8_t p[2] = {(uint8_t)(invalid[i] >> 8), (uint8_t)invalid[i]};
		char what[64];
		snprintf(what, sizeof(what), "close code %d", invalid[i]);
		fail_with_frame(0x88, true, p, 2, 1002, what);
	}
	fail_with_frame(0x88, true, "\x03", 1, 1002, "close with a 1-byte payload");
	/* A close reason that is not UTF-8: 1002 (Autobahn 7.5.1 also accepts 1007). */
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, 0x88, true, "\x03\xe8ok\xff\xfe", 6);
	expect_failure_or(b.data, b.len, 1002, 1007, "close reason not UTF-8");
	/* The same close frame in two TCP segments, cut inside the reason. */
	struct client c;
	if (ws_open_on(&c, main_if.port, "/close") == 0) {
		client_send(&c, b.data, 9);
		h_sleep_ms(50);
		client_send(&c, b.data + 9, b.len - 9);
		expect_close_or(&c, 1002, 1007, "close reason not UTF-8, in two segments");
		client_close(&c);
	}
	/* A valid reason cut after the first byte of the code must be answered 1000. */
	buf_reset(&b);
	wsframe_append(&b, 0x88, true, "\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 13);
	if (ws_open_on(&c, main_if.port, "/close") == 0) {
		client_send(&c, b.data, 7);
		h_sleep_ms(50);
		client_send(&c, b.data + 7, b.len - 7);
		expect_close(&c, 1000, "close with a UTF-8 reason, in two segments");
		client_close(&c);
	}
	buf_fini(&b);
	/* A close without a code is answered. */
	if (ws_open_on(&c, main_if.port, "/close") == 0) {
		ws_sendframe(&c, 0x88, true, "", 0);
		struct frame f;
		int rc = recv_frame(&c, &f, NULL, 5000);
		CHECK_EQ(rc, 0);
		if (rc == 0) {
			CHECK_EQ(f.opcode, 8);
			buf_fini(&f.payload);
		}
		CHECK(client_wait_eof(&c, 5000));
		client_close(&c);
	}
	/* Once the server has sent its close (here asked by the application), messages that
	 * cross it are not handed to the application. */
	if (ws_open_on(&c, main_if.port, "/close") == 0) {
		char reply[128];
		reply_of(&c, reply, sizeof(reply));
		send_text(&c, "close:4001");
		struct frame fr;
		int rc = recv_frame(&c, &fr, NULL, 5000);
		CHECK_EQ(rc, 0);
		if (rc == 0) {
			CHECK_EQ(fr.opcode, 8);
			buf_fini(&fr.payload);
		}
		send_text(&c, "crossing the close");
		h_sleep_ms(100);
		send_close(&c, 4001, "", 0);
		CHECK(client_wait_eof(&c, 5000));
		check_record(reply, 1, "a message after the server's close");
		client_close(&c);
	}
	/* Data after the close frame is ignored. */
	if (ws_open_on(&c, main_if.port, "/close") == 0) {
		char reply[128];
		reply_of(&c, reply, sizeof(reply));
		struct buf b2;
		buf_init(&b2);
		wsframe_append(&b2, 0x88, true, "\x03\xe8", 2);
		wsframe_append(&b2, 0x81, true, "late", 4);
		client_send(&c, b2.data, b2.len);
		buf_fini(&b2);
		expect_close(&c, 1000, "close then data");
		check_record(reply, 0, "close then data");
		client_close(&c);
	}
}

static void test_max_message(void)
{
	size_t n = MAX_MESSAGE + 1;
	char *data = malloc(n);
	memset(data, 'm', n);
	struct client c;
	if (ws_open_on(&c, main_if.port, "/max") == 0) {
		ws_sendframe(&c, 0x82, true, data, MAX_MESSAGE);
		expect_message(&c, 0x2, data, MAX_MESSAGE, "a message of exactly --ws-max-message");
		send_close(&c, 1000, "", 0);
		expect_close(&c, 1000, "close after the largest message");
		client_close(&c);
	}
	fail_with_frame(0x81, true, data, n, 1009, "message over --ws-max-message");
	struct buf b;
	buf_init(&b);
	wsframe_append(&b, 0x01, true, data, MAX_MESSAGE / 2);
	wsframe_append(&b, 0x00, true, data, MAX_MESSAGE / 2);
	wsframe_append(&b, 0x80, true, data, 1);
	expect_failure(b.data, b.len, 1009, "fragmented message over --ws-max-message");
	buf_fini(&b);
	free(data);
}

/* --- Keep-alive and backpressure ---------------------------------------------------------- */

/* A sanitizer report in a process log is a failure. */
static void check_sanitizer(struct proc *p)
{
	char *log = slurp(p->log);
	if (strstr(log, "AddressSanitizer") || strstr(log, "runtime error:")) {
		test_fail(__FILE__, __LINE__, "sanitizer report in %s", p->log);
		proc_dump(p);
	}
	free(log);
}

static void test_no_pong(void)
{
	struct iface f;
	const char *args[] = {"--ping-interval", "1", "--ping-timeout", "1", NULL};
	if (iface_start(&f, interface_exe, "iface-ping", redis.port, test_free_port(), args) < 0) {
		CHECK(false);
		return;
	}
	struct client c;
	if (ws_open_on(&c, f.port, "/silent") == 0) {
		char reply[128];
		reply_of(&c, reply, sizeof(reply));
		int64_t t0 = util_now_ms();
		/* Never read, never answer: wait for the end of the connection without reading. */
		struct pollfd pfd = {.fd = c.fd, .events = POLLRDHUP};
		int pr;
		do
			pr = poll(&pfd, 1, 8000);
		while (pr < 0 && errno == EINTR);
		int64_t dt = util_now_ms() - t0;
		CHECK(pr == 1 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)));
		if (dt < 1800 || dt > 3500)
			fprintf(stderr, "  closed after %lld ms\n", (long long)dt);
		CHECK_INT(dt, >=, 1800);
		CHECK_INT(dt, <=, 3500);
		/* What came: a ping (payload any), nothing else but perhaps a close. */
		struct frame fr;
		int rc = recv_frame(&c, &fr, NULL, 1000);
		CHECK_EQ(rc, 0);
		if (rc == 0) {
			CHECK_EQ(fr.b0, 0x89);
			buf_fini(&fr.payload);
		}
		char needle[300];
		snprintf(needle, sizeof(needle),
			 "{\"channel\":\"websocket.disconnect\",\"reply_channel\":\"%s\",", reply);
		char *line = record_find(record, needle, 3000);
		CHECK(line != NULL);
		free(line);
		client_close(&c);
	}
	/* A client that answers pings (and sends nothing else) stays. */
	if (ws_open_on(&c, f.port, "/answers") == 0) {
		int64_t end = util_now_ms() + 3500;
		int pings = 0;
		bool closed = false;
		while (util_now_ms() < end) {
			struct frame fr;
			int rc = recv_frame(&c, &fr, NULL, (int)(end - util_now_ms()));
			if (rc == -2) {
				closed = true;
				break;
			}
			if (rc < 0)
				break;
			if (fr.opcode == 9) {
				pings++;
				ws_sendframe(&c, 0x8a, true, fr.payload.data, fr.payload.len);
			}
			buf_fini(&fr.payload);
		}
		CHECK(!closed);
		CHECK_INT(pings, >=, 2);
		send_text(&c, "still");
		expect_message(&c, 0x1, "still", 5, "echo after 3.5 s of pings");
		client_close(&c);
	}
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
	check_sanitizer(&f.proc);
}

/* Under AddressSanitizer freed memory sits in quarantine, so RSS says nothing about leaks or
 * bounds: the memory checks are skipped then. */
static bool sanitized(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	char line[512];
	bool yes = false;
	while (f && !yes && fgets(line, sizeof(line), f))
		yes = strstr(line, "libasan") != NULL;
	if (f)
		fclose(f);
	return yes;
}

static long rss_kib(pid_t pid)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	const char *p = strstr(text, "VmRSS:");
	return p ? strtol(p + 6, NULL, 10) : -1;
}

/* The connection ends within 10 s (the close waits behind unread data, then the connection is
 * dropped), and the application hears of it with code. */
static void expect_dropped(struct client *c, const char *reply, int code)
{
	bool eof = false;
	int64_t end = util_now_ms() + 10000;
	while (!eof && util_now_ms() < end) {
		c->in.len = 0;
		eof = client_fill(c, 500) == 0;
	}
	CHECK(eof);
	char needle[300];
	snprintf(needle, sizeof(needle),
		 "{\"channel\":\"websocket.disconnect\",\"reply_channel\":\"%s\",\"code\":%d,",
		 reply, code);
	char *line = record_find(record, needle, 5000);
	if (!line)
		test_fail(__FILE__, __LINE__, "no record line %s", needle);
	test_checks++;
	free(line);
}

static bool log_has(struct proc *p, const char *needle)
{
	char *log = slurp(p->log);
	bool yes = strstr(log, needle) != NULL;
	free(log);
	return yes;
}

/* The application sends a lot to a client that never reads (messages pushed on the reply channel
 * straight into Redis, so nothing comes in from the client): the interface closes it once
 * --ws-max-output bytes wait, and its memory stays bounded. */
static void test_outbound(struct iface *f, const char *data, size_t n)
{
	struct client c;
	if (ws_open_small(&c, f->port, "/slow-out", 4096) < 0)
		return;
	char reply[128];
	reply_of(&c, reply, sizeof(reply));
	char queue[160];
	snprintf(queue, sizeof(queue), "asgi:%.*s", (int)(strchr(reply, '!') + 1 - reply), reply);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "bytes", data, n);
	laurel_msg_set_text(m, "__asgi_channel__", reply);
	char *payload;
	size_t plen;
	laurel_msg_encode(m, &payload, &plen);
	laurel_msg_free(m);
	redisContext *rc = redisConnect("127.0.0.1", redis.port);
	CHECK(rc && !rc->err);
	long before = rss_kib(f->proc.pid), peak = before;
	int sent = 0;
	bool gave_up = false;
	int64_t t0 = util_now_ms();
	while (rc && !rc->err && sent < 2000 && !gave_up && util_now_ms() - t0 < 25000) {
		for (int i = 0; i < 50; i++, sent++) {
			char key[64];
			snprintf(key, sizeof(key), "asgi:wsbackpressure%08d", sent);
			redisAppendCommand(rc, "SET %s %b EX 60", key, payload, plen);
			redisAppendCommand(rc, "RPUSH %s %s", queue, key);
		}
		for (int i = 0; i < 100; i++) {
			void *rep = NULL;
			if (redisGetReply(rc, &rep) != REDIS_OK)
				break;
			freeReplyObject(rep);
		}
		h_sleep_ms(10);
		long now = rss_kib(f->proc.pid);
		if (now > peak)
			peak = now;
		gave_up = log_has(&f->proc, "reads too slowly");
	}
	if (!gave_up)
		gave_up = file_wait(f->proc.log, "reads too slowly", 5000);
	CHECK(gave_up);
	fprintf(stderr,
		"  outbound: %d messages of %zu bytes for a client that never reads, in %lld ms; "
		"interface RSS %ld KiB before, peak %ld KiB\n",
		sent, n, (long long)(util_now_ms() - t0), before, peak);
	CHECK_INT(before, >, 0);
	if (!sanitized(f->proc.pid))
		CHECK_INT(peak - before, <, 16 * 1024);
	expect_dropped(&c, reply, 1013);
	redisFree(rc);
	free(payload);
	client_close(&c);
}

/* A client that sends as fast as it can: every message goes to websocket.receive and the
 * application answers nothing ("broadcast:" to an empty group). The interface must not read
 * faster than it can hand messages to Redis and buffer the difference without bound. */
static void test_inbound(struct iface *f, const char *data, size_t n)
{
	struct client c;
	if (ws_open_on(&c, f->port, "/flood") < 0)
		return;
	char reply[128];
	reply_of(&c, reply, sizeof(reply));
	char *text = malloc(n);
	memcpy(text, "broadcast:nobody:", 17);
	memset(text + 17, 'f', n - 17);
	(void)data;
	struct buf fr;
	buf_init(&fr);
	wsframe_append(&fr, 0x81, true, text, n);
	long before = rss_kib(f->proc.pid), peak = before;
	int sent = 0;
	int64_t t0 = util_now_ms();
	while (sent < 4000 && util_now_ms() - t0 < 20000) {
		if (client_send(&c, fr.data, fr.len) < 0)
			break;
		sent++;
		if (sent % 16 == 0) {
			long now = rss_kib(f->proc.pid);
			if (now > peak)
				peak = now;
		}
	}
	int64_t dt = util_now_ms() - t0;
	for (int i = 0; i < 20; i++) {
		long now = rss_kib(f->proc.pid);
		if (now > peak)
			peak = now;
		h_sleep_ms(50);
	}
	fprintf(stderr,
		"  inbound: %d messages of %zu bytes sent in %lld ms; interface RSS %ld KiB "
		"before, "
		"peak %ld KiB; %d websocket.receive recorded so far\n",
		sent, n, (long long)dt, before, peak, count_for("websocket.receive", reply));
	CHECK_EQ(sent, 4000);
	if (!sanitized(f->proc.pid))
		CHECK_INT(peak - before, <, 16 * 1024);
	send_close(&c, 1000, "", 0);
	expect_close(&c, 1000, "close after the flood");
	buf_fini(&fr);
	free(text);
	client_close(&c);
}

static void test_backpressure(void)
{
	struct iface f;
	const char *args[] = {"--ws-max-output", "65536", "--capacity", "100000", NULL};
	if (iface_start(&f, interface_exe, "iface-slow", redis.port, test_free_port(), args) < 0) {
		CHECK(false);
		return;
	}
	size_t n = 16384;
	char *data = malloc(65000);
	memset(data, 's', 65000);
	char *big = malloc(100000);
	memset(big, 'B', 100000);
	struct client c;
	/* A client that reads is never closed, whatever it gets. */
	if (ws_open_on(&c, f.port, "/fast") == 0) {
		for (int i = 0; i < 40; i++) {
			ws_sendframe(&c, 0x82, true, data, n);
			if (!expect_message(&c, 0x2, data, n, "echo to a client that reads"))
				break;
		}
		ws_sendframe(&c, 0x82, true, data, 65000);
		expect_message(
			&c, 0x2, data, 65000,
			"a 65000-byte message with --ws-max-output 65536, to a client that reads");
		/* One message larger than --ws-max-output is not a slow reader either. */
		ws_sendframe(&c, 0x82, true, big, 100000);
		expect_message(
			&c, 0x2, big, 100000,
			"a 100000-byte message with --ws-max-output 65536, to a client that reads");
		send_text(&c, "after big");
		expect_message(
			&c, 0x1, "after big", 9,
			"a client that reads stays open after a message above --ws-max-output");
		send_close(&c, 1000, "", 0);
		expect_close(&c, 1000, "close of the client that reads");
		client_close(&c);
	}
	test_outbound(&f, data, n);
	test_inbound(&f, data, n);
	free(big);
	free(data);
	CHECK(proc_alive(&f.proc));
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
	check_sanitizer(&f.proc);
}

/* One limit covers the whole path: with the default --ws-max-message (1 MiB) a message of
 * exactly 1 MiB is delivered (the layer's message limit has room for it and its envelope) and one
 * byte more is 1009; raising --ws-max-message raises the layer's limit with it. */
static void max_echo(int port, size_t ok, const char *what)
{
	char *data = malloc(ok + 1);
	memset(data, 'M', ok + 1);
	struct client c;
	if (ws_open_on(&c, port, "/max") == 0) {
		ws_sendframe(&c, 0x82, true, data, ok);
		expect_message(&c, 0x2, data, ok, what);
		send_close(&c, 1000, "", 0);
		expect_close(&c, 1000, what);
		client_close(&c);
	}
	if (ws_open_on(&c, port, "/max") == 0) {
		ws_sendframe(&c, 0x82, true, data, ok + 1);
		expect_close(&c, 1009, what);
		client_close(&c);
	}
	free(data);
}

static void test_max_message_whole_path(void)
{
	struct iface f;
	if (iface_start(&f, interface_exe, "iface-default", redis.port, test_free_port(), NULL) ==
	    0) {
		max_echo(f.port, 1 << 20, "exactly 1 MiB with the default --ws-max-message");
		CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
		check_sanitizer(&f.proc);
	} else {
		CHECK(false);
	}
	const char *args[] = {"--ws-max-message", "3000000", NULL};
	if (iface_start(&f, interface_exe, "iface-3m", redis.port, test_free_port(), args) == 0) {
		max_echo(f.port, 3000000, "exactly 3,000,000 bytes with --ws-max-message 3000000");
		CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
		check_sanitizer(&f.proc);
	} else {
		CHECK(false);
	}
}

/* --max-output-total: slow readers that never read, each under --ws-max-output, hold more than
 * the total between them; the one holding the most is closed first (websocket.disconnect 1013),
 * the others and a client that reads stay open, and the interface's memory stays bounded. */
static void test_output_total(void)
{
	struct iface f;
	const char *args[] = {"--max-output-total", "4M", "--ws-max-output", "64M", NULL};
	if (iface_start(&f, interface_exe, "iface-total", redis.port, test_free_port(), args) < 0) {
		CHECK(false);
		return;
	}
	enum { SLOW = 4 };
	struct client slow[SLOW], fast;
	char replies[SLOW + 1][128];
	bool up = true;
	for (int i = 0; i < SLOW; i++)
		up = up && ws_open_small(&slow[i], f.port, "/total", 4096) == 0;
	up = up && ws_open_on(&fast, f.port, "/total-fast") == 0;
	CHECK(up);
	if (!up)
		return;
	for (int i = 0; i < SLOW; i++)
		reply_of(&slow[i], replies[i], sizeof(replies[i]));
	reply_of(&fast, replies[SLOW], sizeof(replies[SLOW]));
	size_t n = 16384;
	char *data = malloc(n);
	memset(data, 't', n);
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bytes(m, "bytes", data, n);
	redisContext *rc = redisConnect("127.0.0.1", redis.port);
	CHECK(rc && !rc->err);
	long before = rss_kib(f.proc.pid), peak = before;
	int64_t t0 = util_now_ms();
	bool hit = false;
	int rounds = 0, fast_got = 0;
	/* Each round: two messages for slow reader 0, one for each other slow reader and the
	 * fast one (read at once). Reader 0 holds the most. */
	while (rc && !rc->err && !hit && rounds < 400 && util_now_ms() - t0 < 40000) {
		for (int k = 0; k < SLOW + 2; k++) {
			int who = k == SLOW + 1 ? 0 : k;
			const char *reply = replies[who];
			char queue[160], key[64];
			snprintf(queue, sizeof(queue), "asgi:%.*s",
				 (int)(strchr(reply, '!') + 1 - reply), reply);
			laurel_msg_set_text(m, "__asgi_channel__", reply);
			char *payload;
			size_t plen;
			laurel_msg_encode(m, &payload, &plen);
			snprintf(key, sizeof(key), "asgi:total%08d-%d", rounds, k);
			redisAppendCommand(rc, "SET %s %b EX 60", key, payload, plen);
			redisAppendCommand(rc, "RPUSH %s %s", queue, key);
			free(payload);
		}
		for (int i = 0; i < 2 * (SLOW + 2); i++) {
			void *rep = NULL;
			if (redisGetReply(rc, &rep) != REDIS_OK)
				break;
			freeReplyObject(rep);
		}
		rounds++;
		struct frame fr;
		while (recv_frame(&fast, &fr, NULL, fast_got < rounds ? 2000 : 0) == 0) {
			fast_got++;
			buf_fini(&fr.payload);
			if (fast_got >= rounds)
				break;
		}
		long now = rss_kib(f.proc.pid);
		if (now > peak)
			peak = now;
		hit = log_has(&f.proc, "max-output-total");
	}
	if (!hit) /* a loaded machine: the interface may still be taking the messages from Redis */
		hit = file_wait(f.proc.log, "max-output-total", 15000);
	CHECK(hit);
	fprintf(stderr,
		"  output total: %d rounds of %zu-byte messages; interface RSS %ld KiB before, "
		"peak %ld KiB\n",
		rounds, n, before, peak);
	if (!sanitized(f.proc.pid))
		CHECK_INT(peak - before, <, 24 * 1024);
	/* The largest was closed, with 1013 for the application; the others are still open. */
	expect_dropped(&slow[0], replies[0], 1013);
	for (int i = 1; i < SLOW; i++) {
		test_checks++;
		if (client_wait_eof(&slow[i], 300))
			test_fail(__FILE__, __LINE__, "slow reader %d (holding less) was closed too", i);
	}
	send_text(&fast, "still here");
	struct frame fr;
	bool echoed = false;
	while (!echoed && recv_frame(&fast, &fr, NULL, 5000) == 0) {
		echoed = fr.opcode == 1 && fr.payload.len == 10 &&
			 memcmp(fr.payload.data, "still here", 10) == 0;
		buf_fini(&fr.payload);
	}
	CHECK(echoed);
	laurel_msg_free(m);
	redisFree(rc);
	free(data);
	for (int i = 0; i < SLOW; i++)
		client_close(&slow[i]);
	client_close(&fast);
	CHECK(proc_alive(&f.proc));
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
	check_sanitizer(&f.proc);
}

/* 1,000 small messages in one TCP write: all delivered, none refused (frames beyond the
 * in-flight limit wait unparsed in the input buffer). With the default capacity (100) they come
 * back in the order sent; with --capacity 4 the channel is full again and again, and a refused
 * message is sent again (for a bounded time) instead of closing with 1013: all arrive, a retried
 * one possibly after later ones (their `order` field says where they belong). */
static void burst(int port, bool in_order, const char *what)
{
	struct client c;
	if (ws_open_on(&c, port, "/burst") < 0) {
		CHECK(!"burst: handshake");
		return;
	}
	enum { N = 1000 };
	struct buf all;
	buf_init(&all);
	char text[16];
	for (int i = 0; i < N; i++) {
		int n = snprintf(text, sizeof(text), "b%d", i);
		wsframe_append(&all, 0x81, true, text, (size_t)n);
	}
	CHECK_EQ(client_send(&c, all.data, all.len), 0);
	static bool seen[N];
	memset(seen, 0, sizeof(seen));
	int got = 0, out_of_order = 0, next = 0;
	while (got < N) {
		struct frame f;
		if (recv_frame(&c, &f, NULL, 10000) < 0)
			break;
		if (f.opcode != 1) {
			fprintf(stderr, "%s: opcode %d after %d messages\n", what, f.opcode, got);
			buf_fini(&f.payload);
			break;
		}
		buf_append_byte(&f.payload, 0);
		int k = atoi(f.payload.data + 1);
		if (k >= 0 && k < N && !seen[k]) {
			seen[k] = true;
			got++;
			out_of_order += k != next;
			next = k + 1;
		}
		buf_fini(&f.payload);
	}
	fprintf(stderr, "  %s: %d of %d echoed, %d out of order\n", what, got, N, out_of_order);
	test_checks++;
	if (got != N)
		test_fail(__FILE__, __LINE__, "%s: %d of %d messages came back", what, got, N);
	if (in_order)
		CHECK_EQ(out_of_order, 0);
	send_close(&c, 1000, "", 0);
	expect_close(&c, 1000, what);
	buf_fini(&all);
	client_close(&c);
}

static void test_burst(void)
{
	burst(main_if.port, true, "1,000 frames in one write");
	struct iface f;
	const char *args[] = {"--capacity", "4", NULL};
	if (iface_start(&f, interface_exe, "iface-cap4", redis.port, test_free_port(), args) < 0) {
		CHECK(false);
		return;
	}
	burst(f.port, false, "1,000 frames in one write, --capacity 4");
	/* The application stops (SIGSTOP): the channel stays full, and after the bounded wait
	 * (2 s) the connection is closed with 1013 — not at once, and not never. */
	struct client c;
	if (ws_open_on(&c, f.port, "/stalled") == 0) {
		kill(responder.pid, SIGSTOP);
		for (int i = 0; i < 20; i++)
			send_text(&c, "stalled");
		int64_t t0 = util_now_ms();
		expect_close(&c, 1013, "a channel that stays full");
		int64_t took = util_now_ms() - t0;
		kill(responder.pid, SIGCONT);
		CHECK_INT(took, >=, 1800);
		CHECK_INT(took, <, 8000);
		CHECK(log_has(&f.proc, "stayed full for 2 s"));
		client_close(&c);
	}
	CHECK(proc_alive(&f.proc));
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
	check_sanitizer(&f.proc);
}

/* Sends a WebSocket handshake and leaves the answer unread. */
static int ws_ask(struct client *c, int port, const char *path)
{
	if (client_tcp(c, "127.0.0.1", port) < 0)
		return -1;
	return send_handshake(c, path);
}

static bool llen_becomes(const char *key, const char *want, int timeout_ms)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "LLEN %s", key);
	int64_t deadline = util_now_ms() + timeout_ms;
	while (strcmp(test_redis_cmd(&redis, cmd), want) != 0 && util_now_ms() < deadline)
		h_sleep_ms(5);
	return strcmp(test_redis_cmd(&redis, cmd), want) == 0;
}

/* websocket.connect refused because its channel is full waits and goes again (backoff up to
 * 200 ms) while the client waits for the handshake: once a worker takes one message, the waiting
 * connect goes in. One never taken within --websocket_connect_timeout is a 503; a client that
 * leaves while its connect waits causes no websocket.disconnect. Nobody reads the prefix "cf:",
 * so the test plays the worker with LPOP. */
static void test_connect_full(void)
{
	struct iface f;
	const char *args[] = {"--prefix", "cf:", "--capacity", "2",
			      "--websocket_connect_timeout", "3", NULL};
	if (iface_start(&f, interface_exe, "iface-connect-full", redis.port, test_free_port(),
			args) < 0) {
		CHECK(false);
		return;
	}
	struct client a, b, c, d, e;
	CHECK_EQ(ws_ask(&a, f.port, "/a"), 0);
	CHECK_EQ(ws_ask(&b, f.port, "/b"), 0);
	CHECK(llen_becomes("cf:websocket.connect", "2", 5000));
	CHECK_EQ(ws_ask(&c, f.port, "/c"), 0);
	CHECK_EQ(ws_ask(&e, f.port, "/e"), 0);
	h_sleep_ms(300);
	/* Before: a full websocket.connect was a 503 at once. */
	CHECK_INT(client_fill(&c, 100), <, 0);
	CHECK_EQ(c.in.len, 0);
	/* e leaves while its connect waits. The interface does not read a held handshake, so
	 * it cannot tell: e's connect still goes in, and its disconnect follows (no ghost). */
	client_close(&e);
	for (int i = 0; i < 2; i++) {
		CHECK(strcmp(test_redis_cmd(&redis, "LPOP cf:websocket.connect"), "(nil)") != 0);
		CHECK(llen_becomes("cf:websocket.connect", "2", 1000)); /* c's, then e's */
	}
	test_redis_cmd(&redis, "LPOP cf:websocket.connect");
	h_sleep_ms(600); /* nothing else waits */
	CHECK_STR(test_redis_cmd(&redis, "LLEN cf:websocket.connect"), "1");
	/* Full again, for good: d's connect is never taken. */
	test_redis_cmd(&redis, "RPUSH cf:websocket.connect filler");
	int64_t t0 = util_now_ms();
	CHECK_EQ(ws_ask(&d, f.port, "/d"), 0);
	struct response r;
	CHECK_EQ(client_response(&d, &r, false, 8000), 0);
	CHECK_EQ(r.status, 503);
	CHECK_INT(util_now_ms() - t0, >=, 2500);
	CHECK(r.body && strstr(r.body, "Connection queue full."));
	response_free(&r);
	CHECK(log_has(&f.proc, "not taken within 3 s (the channel stayed full)"));
	/* a, b and c reached the application, which never answered: 403 at the timeout. Each
	 * of a, b, c and e gets a websocket.disconnect; d, whose connect never went, none. */
	struct client *held[] = {&a, &b, &c};
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(client_response(held[i], &r, false, 8000), 0);
		CHECK_EQ(r.status, 403);
		response_free(&r);
	}
	int disconnects = 0;
	int64_t deadline = util_now_ms() + 5000;
	while (disconnects < 4 && util_now_ms() < deadline) {
		if (strcmp(test_redis_cmd(&redis, "LPOP cf:websocket.disconnect"), "(nil)") != 0)
			disconnects++;
		else
			h_sleep_ms(20);
	}
	h_sleep_ms(700); /* the outbox's backoff is at most 200 ms for a full channel */
	while (strcmp(test_redis_cmd(&redis, "LPOP cf:websocket.disconnect"), "(nil)") != 0)
		disconnects++;
	CHECK_EQ(disconnects, 4);
	client_close(&a);
	client_close(&b);
	client_close(&c);
	client_close(&d);
	test_redis_cmd(&redis, "DEL cf:websocket.connect cf:websocket.disconnect");
	CHECK(proc_alive(&f.proc));
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 10000), 0);
	check_sanitizer(&f.proc);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s RESPONDER INTERFACE\n", argv[0]);
		return 2;
	}
	responder_exe = argv[1];
	interface_exe = argv[2];
	h_init("ws-conformance");
	if (test_redis_start(&redis) < 0)
		return 1;
	char port[16];
	snprintf(port, sizeof(port), "%d", redis.port);
	snprintf(record, sizeof(record), "%s/responder.rec", h_tmp());
	const char *rargv[] = {responder_exe, "--port", port, "--websocket",
			       "--record",    record,	NULL};
	proc_start(&responder, "responder", rargv);
	if (!file_wait(responder.log, "ready", 10000)) {
		proc_dump(&responder);
		CHECK(false);
		goto out;
	}
	char max[32];
	snprintf(max, sizeof(max), "%d", MAX_MESSAGE);
	const char *args[] = {"--ws-max-message", max, NULL};
	if (iface_start(&main_if, interface_exe, "iface", redis.port, test_free_port(), args) < 0) {
		CHECK(false);
		goto out;
	}
	test_handshake();
	test_lengths();
	test_fragments();
	test_protocol_errors();
	test_utf8_messages();
	test_close();
	test_max_message();
	test_max_message_whole_path();
	test_no_pong();
	test_connect_full();
	test_burst(); /* before test_backpressure, whose floods leave websocket.receive full a while */
	test_backpressure();
	test_output_total();
	CHECK(proc_alive(&main_if.proc));
	CHECK_EQ(proc_stop(&main_if.proc, SIGTERM, 10000), 0);
	check_sanitizer(&main_if.proc);
out:
	proc_stop(&responder, SIGTERM, 5000);
	test_redis_cleanup(&redis);
	if (test_failures)
		proc_dump(&main_if.proc);
	h_cleanup();
	return test_done();
}
