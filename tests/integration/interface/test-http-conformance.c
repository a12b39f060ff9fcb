/* RFC 9112 conformance and request limits of laurel-interface, over raw sockets: request-line
 * forms, header syntax, Content-Length and Transfer-Encoding rules, every request smuggling shape
 * we know of, keep-alive semantics, 400/413/414/431/501/505 and the slow-client timeouts.
 *
 * Each case is written on a fresh connection and the outcome is read until the server closes:
 * it must be one of the outcomes the case allows. An outcome is the list of responses, each as
 * its status (an error page of the interface's own) or "status:body" (from the application),
 * then "EOF" or "TIMEOUT". Most cases end with a sentinel request carrying "Connection: close".
 * Whatever happens, the request "GET /smuggled" hidden in bodies must never reach the
 * application: the responder's record is checked for it at the end.
 *
 * argv: laurel-test-responder, laurel-interface. */
#include "tests/integration/interface/harness.h"
#include "tests/lib/test.h"

#include "common/util.h"
#include "interface/http1.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T 5000

static const char *responder_exe, *iface_exe;
static struct test_redis redis;
static struct responder resp;
static struct iface conf_if, slow_if, stream_if;

#define SMUG "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" /* 35 bytes */
#define SENT "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#define POST "POST /echo HTTP/1.1\r\nHost: x\r\n"
#define GET(target) "GET " target " HTTP/1.1\r\nHost: x\r\n\r\n"

struct kase {
	const char *name;
	const char *req;
	size_t len; /* 0: strlen(req) */
	const char *ok[4];
};

static void run_cases(int port, const struct kase *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct kase *k = &cases[i];
		size_t len = k->len ? k->len : strlen(k->req);
		char *got = http_outcome(port, k->req, len, 3000, false);
		bool ok = false;
		for (size_t j = 0; j < ARRAY_SIZE(k->ok) && k->ok[j]; j++)
			ok = ok || strcmp(got, k->ok[j]) == 0;
		test_checks++;
		if (!ok) {
			test_fail(__FILE__, __LINE__,
				  "case \"%s\": got \"%s\", expected one of:", k->name, got);
			for (size_t j = 0; j < ARRAY_SIZE(k->ok) && k->ok[j]; j++)
				fprintf(stderr, "    \"%s\"\n", k->ok[j]);
		}
		free(got);
	}
}

#define REJECT400 "400,EOF"
#define HELLO "200:hello,EOF"

/* --- Request line ---------------------------------------------------------------------------- */

static const struct kase request_line[] = {
	{"origin-form", GET("/hello") SENT, 0, {"200:hello,200:hello,EOF"}},
	{"absolute-form",
	 "GET http://example.com/hello?abs=1 HTTP/1.1\r\nHost: example.com\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"absolute-form, no path",
	 "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n" SENT,
	 0,
	 {"404:not found,200:hello,EOF"}},
	{"asterisk-form OPTIONS",
	 "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {"404:not found,200:hello,EOF"}},
	{"asterisk-form GET", GET("*") SENT, 0, {REJECT400}},
	{"authority-form CONNECT",
	 "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" SENT,
	 0,
	 {"501,EOF"}},
	{"authority-form GET", GET("example.com:80") SENT, 0, {REJECT400}},
	{"empty lines before the request", "\r\n\r\n" SENT, 0, {HELLO}},
	{"method with a bad byte",
	 "G(T /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"lower-case method",
	 "get /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {"501,EOF"}},
	{"unknown method",
	 "FROB /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {"501,EOF"}},
	{"no version (HTTP/0.9)", "GET /hello\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"HTTP/2.0", "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n" SENT, 0, {"505,EOF"}},
	{"HTTP/3.0", "GET /hello HTTP/3.0\r\nHost: x\r\n\r\n" SENT, 0, {"505,EOF", REJECT400}},
	{"version HTTP/1", "GET /hello HTTP/1\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"version http/1.1", "GET /hello http/1.1\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"version HTTP/1.10",
	 "GET /hello HTTP/1.10\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {REJECT400, "505,EOF"}},
	/* RFC 9112 §3: recipients MAY parse on whitespace boundaries. */
	{"two spaces",
	 "GET  /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"tab separator", "GET\t/hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"space after version", "GET /hello HTTP/1.1 \r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	/* RFC 9112 §2.2: a recipient MAY take a bare LF as a line end. */
	{"bare LF after request line",
	 "GET /hello HTTP/1.1\nHost: x\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"bare CR in request line",
	 "GET /hel\rlo HTTP/1.1\r\nHost: x\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"non-ASCII path", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"byte 0x7f in path", "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n" SENT, 0, {REJECT400}},
	{"%ff", GET("/%ff") SENT, 0, {REJECT400}},
	{"%c3%28", GET("/%c3%28") SENT, 0, {REJECT400}},
	{"overlong %c0%af", GET("/%c0%af") SENT, 0, {REJECT400}},
	{"surrogate %ed%a0%80", GET("/%ed%a0%80") SENT, 0, {REJECT400}},
	{"above U+10FFFF", GET("/%f4%90%80%80") SENT, 0, {REJECT400}},
	{"truncated UTF-8 %e2%82", GET("/%e2%82") SENT, 0, {REJECT400}},
	{"valid UTF-8 %e2%82%ac", GET("/%e2%82%ac") SENT, 0, {"404:not found,200:hello,EOF"}},
	{"bad escape kept", GET("/a%zz%4") SENT, 0, {"404:not found,200:hello,EOF"}},
};

/* --- Header syntax --------------------------------------------------------------------------- */

static const struct kase header_syntax[] = {
	{"obs-fold",
	 "GET /hello?fold=1 HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n  b\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"space before colon",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"tab before colon",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"space in name", "GET /hello HTTP/1.1\r\nHost: x\r\nX A: 1\r\n\r\n" SENT, 0, {REJECT400}},
	{"control byte in name",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX\x01A: 1\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"'(' in name", "GET /hello HTTP/1.1\r\nHost: x\r\nX(A: 1\r\n\r\n" SENT, 0, {REJECT400}},
	{"empty name", "GET /hello HTTP/1.1\r\nHost: x\r\n: 1\r\n\r\n" SENT, 0, {REJECT400}},
	{"no colon", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A 1\r\n\r\n" SENT, 0, {REJECT400}},
	{"whitespace before the first header",
	 "GET /hello HTTP/1.1\r\n Host: x\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"bare CR in value",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"bare LF ends a header",
	 "GET /hello HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"bare LF ends the head", "GET /hello HTTP/1.1\nHost: x\n\n" SENT, 0, {REJECT400}},
	{"NUL in value",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n" SENT,
	 sizeof("GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n" SENT) - 1,
	 {REJECT400}},
	{"no Host in HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n" SENT, 0, {REJECT400}},
	{"two Host headers",
	 "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"no Host in HTTP/1.0", "GET /hello HTTP/1.0\r\n\r\n", 0, {HELLO}},
	{"obs-text in value",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: \xe9\xff\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
};

/* --- Content-Length -------------------------------------------------------------------------- */

static const struct kase content_length[] = {
	{"CL", POST "Content-Length: 5\r\n\r\nhello" SENT, 0, {"200:hello,200:hello,EOF"}},
	{"CL 0", POST "Content-Length: 0\r\n\r\n" SENT, 0, {"200:,200:hello,EOF"}},
	{"CL with OWS",
	 POST "Content-Length:  5 \r\n\r\nhello" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"CL leading zeros",
	 POST "Content-Length: 005\r\n\r\nhello" SENT,
	 0,
	 {"200:hello,200:hello,EOF", REJECT400}},
	{"CL not a number", POST "Content-Length: abc\r\n\r\nhello" SENT, 0, {REJECT400}},
	{"CL negative", POST "Content-Length: -1\r\n\r\nhello" SENT, 0, {REJECT400}},
	{"CL plus sign", POST "Content-Length: +5\r\n\r\nhello" SENT, 0, {REJECT400}},
	{"CL hex", POST "Content-Length: 0x5\r\n\r\nhello" SENT, 0, {REJECT400}},
	{"CL two numbers", POST "Content-Length: 5 5\r\n\r\nhello" SENT, 0, {REJECT400}},
	{"CL list of equal values",
	 POST "Content-Length: 5, 5\r\n\r\nhello" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"CL twice, same value",
	 POST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"CL.CL different values",
	 POST "Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello0\r\n\r\n" SMUG SENT,
	 0,
	 {REJECT400}},
	{"CL list of different values",
	 POST "Content-Length: 5, 40\r\n\r\nhello0\r\n\r\n" SMUG SENT,
	 0,
	 {REJECT400}},
	{"CL overflow",
	 POST "Content-Length: 99999999999999999999999\r\n\r\nhello" SENT,
	 0,
	 {REJECT400, "413,EOF"}},
	{"CL 2^64+5",
	 POST "Content-Length: 18446744073709551621\r\n\r\nhello" SENT,
	 0,
	 {REJECT400, "413,EOF"}},
	{"CL in a GET",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
};

/* --- Transfer-Encoding and smuggling --------------------------------------------------------- */

#define TE "Transfer-Encoding: chunked\r\n"
#define ZERO_SMUG "0\r\n\r\n" SMUG /* 40 bytes */

static const struct kase smuggling[] = {
	{"chunked", POST TE "\r\n5\r\nhello\r\n0\r\n\r\n" SENT, 0, {"200:hello,200:hello,EOF"}},
	{"chunked, trailers",
	 POST TE "\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"chunked, upper case",
	 POST "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"chunk extension",
	 POST TE "\r\n5;a=b\r\nhello\r\n0;c\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"chunk extension, quoted",
	 POST TE "\r\n5;a=\"b;c=d\"\r\nhello\r\n0\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"chunk extension, CRLF in quotes",
	 POST TE "\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n" SMUG "\"\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"chunk extension, bare CR",
	 POST TE "\r\n5;a\rb\r\nhello\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"CL.TE",
	 POST "Content-Length: 40\r\n" TE "\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:,EOF"}},
	{"TE.CL",
	 POST TE "Content-Length: 3\r\n\r\n23\r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:" SMUG ",EOF"}},
	{"TE xchunked + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding: xchunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE xchunked",
	 POST "Transfer-Encoding: xchunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE 'chunked ' + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding: chunked \r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:,EOF"}},
	{"TE 'chunked '",
	 POST "Transfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:hello,200:hello,EOF"}},
	{"TE tab chunked + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding:\tchunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:,EOF"}},
	{"TE VT chunked + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding: \x0b"
	      "chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE 'chunked, chunked'",
	 POST "Transfer-Encoding: chunked, chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE twice chunked", POST TE TE "\r\n" ZERO_SMUG SENT, 0, {REJECT400, "501,EOF"}},
	{"TE chunked then identity + CL",
	 POST "Content-Length: 40\r\n" TE "Transfer-Encoding: identity\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE identity then chunked",
	 POST "Transfer-Encoding: identity\r\n" TE "\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE gzip, chunked",
	 POST "Transfer-Encoding: gzip, chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {"501,EOF"}},
	{"TE chunked, gzip",
	 POST "Transfer-Encoding: chunked, gzip\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "501,EOF"}},
	{"TE space before colon + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding : chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400}},
	{"CL space before colon + TE",
	 POST TE "Content-Length : 40\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400}},
	{"TE folded + CL",
	 POST "Content-Length: 40\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:,EOF"}},
	{"Transfer_Encoding + CL",
	 POST "Content-Length: 40\r\nTransfer_Encoding: chunked\r\n\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:" ZERO_SMUG ",200:hello,EOF"}},
	{"TE in HTTP/1.0",
	 "POST /echo HTTP/1.0\r\n" TE "\r\n" ZERO_SMUG SENT,
	 0,
	 {REJECT400, "200:,EOF"}},
	{"chunk size zz", POST TE "\r\nzz\r\n" ZERO_SMUG SENT, 0, {REJECT400}},
	{"chunk size -1", POST TE "\r\n-1\r\n" ZERO_SMUG SENT, 0, {REJECT400}},
	{"chunk size 0x23", POST TE "\r\n0x23\r\n" SMUG "\r\n0\r\n\r\n" SENT, 0, {REJECT400}},
	{"chunk size with leading space",
	 POST TE "\r\n 23\r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"chunk size with trailing space",
	 POST TE "\r\n23 \r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:" SMUG ",200:hello,EOF"}},
	{"chunk size overflow",
	 POST TE "\r\n10000000000000023\r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "413,EOF"}},
	{"chunk size 2^64-1",
	 POST TE "\r\nffffffffffffffff\r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "413,EOF"}},
	{"chunk size, many leading zeros",
	 POST TE "\r\n00000000000000000000023\r\n" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400, "200:" SMUG ",200:hello,EOF"}},
	{"chunk data longer than size",
	 POST TE "\r\n3\r\nabc" SMUG "\r\n0\r\n\r\n" SENT,
	 0,
	 {REJECT400}},
	{"bare LF after chunk size", POST TE "\r\n5\nhello\r\n0\r\n\r\n" SMUG SENT, 0, {REJECT400}},
	{"bare LF after chunk data", POST TE "\r\n5\r\nhello\n0\r\n\r\n" SMUG SENT, 0, {REJECT400}},
	{"request line as a trailer", POST TE "\r\n0\r\n" SMUG SENT, 0, {REJECT400}},
	{"missing last chunk", POST TE "\r\n5\r\nhello\r\n\r\n" SMUG SENT, 0, {REJECT400}},
};

/* --- Keep-alive ------------------------------------------------------------------------------ */

static const struct kase keep_alive[] = {
	{"1.1 persistent by default",
	 GET("/hello") GET("/hello") SENT,
	 0,
	 {"200:hello,200:hello,200:hello,EOF"}},
	{"1.1 Connection: close",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" SMUG,
	 0,
	 {HELLO}},
	{"1.1 Connection: keep-alive, close",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n" SMUG,
	 0,
	 {HELLO}},
	{"1.1 Connection: CLOSE",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n" SMUG,
	 0,
	 {HELLO}},
	{"1.0 closes by default", "GET /hello HTTP/1.0\r\n\r\n" SMUG, 0, {HELLO}},
	{"1.0 keep-alive",
	 "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"upgrade not taken, then more requests",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
	{"h2c upgrade not taken",
	 "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
	 "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n" SENT,
	 0,
	 {"200:hello,200:hello,EOF"}},
};

/* --- Limits (this instance: --max-uri 256 --max-header-size 1024 --max-headers 20
 * --max-body 100000) --------------------------------------------------------------------------- */

static void test_limits(int port)
{
	char req[8192];
	char *got;
	char path[300];
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	/* A target of 256 bytes is fine; 257 is not. */
	snprintf(req, sizeof(req), "GET %.256s HTTP/1.1\r\nHost: x\r\n\r\n" SENT, path);
	got = http_outcome(port, req, strlen(req), 3000, false);
	CHECK_STR(got, "404:not found,200:hello,EOF");
	free(got);
	snprintf(req, sizeof(req), "GET %.257s HTTP/1.1\r\nHost: x\r\n\r\n" SENT, path);
	got = http_outcome(port, req, strlen(req), 3000, false);
	CHECK_STR(got, "414,EOF");
	free(got);
	/* Header bytes. */
	char big[1100];
	memset(big, 'v', sizeof(big));
	snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: %.1020s\r\n\r\n" SENT,
		 big);
	got = http_outcome(port, req, strlen(req), 3000, false);
	CHECK_STR(got, "431,EOF");
	free(got);
	snprintf(req, sizeof(req), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: %.900s\r\n\r\n" SENT,
		 big);
	got = http_outcome(port, req, strlen(req), 3000, false);
	CHECK_STR(got, "200:hello,200:hello,EOF");
	free(got);
	/* Header count: 20 fit, 21 do not. */
	for (int n = 20; n <= 21; n++) {
		struct buf b;
		buf_init(&b);
		buf_append_str(&b, "GET /hello HTTP/1.1\r\nHost: x\r\n");
		for (int i = 1; i < n; i++)
			buf_printf(&b, "X-%d: %d\r\n", i, i);
		buf_append_str(&b, "\r\n" SENT);
		got = http_outcome(port, b.data, b.len, 3000, false);
		CHECK_STR(got, n == 20 ? "200:hello,200:hello,EOF" : "431,EOF");
		free(got);
		buf_fini(&b);
	}
	/* Body: a Content-Length over the limit is refused before the body is sent. */
	int64_t t0 = util_now_ms();
	got = http_outcome(port, POST "Content-Length: 100001\r\n\r\n",
		      strlen(POST "Content-Length: 100001\r\n\r\n"), 3000, false);
	CHECK_STR(got, "413,EOF");
	CHECK_INT(util_now_ms() - t0, <, 1000);
	free(got);
	got = http_outcome(port, POST "Content-Length: 100001\r\nExpect: 100-continue\r\n\r\n",
		      strlen(POST "Content-Length: 100001\r\nExpect: 100-continue\r\n\r\n"), 3000, false);
	CHECK_STR(got, "413,EOF");
	free(got);
	/* A chunked body that grows past it. */
	struct buf b;
	buf_init(&b);
	buf_append_str(&b, POST TE "\r\n");
	char chunk[10000];
	memset(chunk, 'c', sizeof(chunk));
	for (int i = 0; i < 11; i++) {
		buf_printf(&b, "%zx\r\n", sizeof(chunk));
		buf_append(&b, chunk, sizeof(chunk));
		buf_append_str(&b, "\r\n");
	}
	buf_append_str(&b, "0\r\n\r\n" SENT);
	got = http_outcome(port, b.data, b.len, 3000, false);
	CHECK_STR(got, "413,EOF");
	free(got);
	/* Exactly the limit is fine. */
	buf_reset(&b);
	buf_append_str(&b, POST "Content-Length: 100000\r\n\r\n");
	char *body = xmalloc(100000);
	memset(body, 'b', 100000);
	buf_append(&b, body, 100000);
	buf_append_str(&b, SENT);
	got = http_outcome(port, b.data, b.len, 5000, false);
	CHECK(strncmp(got, "200:bbbb", 8) == 0 &&
	      strlen(got) == 4 + 100000 + strlen(",200:hello,EOF") &&
	      strcmp(got + 4 + 100000, ",200:hello,EOF") == 0);
	free(got);
	free(body);
	buf_fini(&b);
}

/* --- Slow clients (this instance: --header-timeout 1) ---------------------------------------- */

static void test_slow_clients(int port)
{
	struct client c;
	struct response r;
	/* Half a head, then nothing. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", port), 0);
	int64_t t0 = util_now_ms();
	client_sends(&c, "GET /hello HTTP/1.1\r\nHos");
	int rc = client_response(&c, &r, false, 4000);
	int64_t took = util_now_ms() - t0;
	CHECK(rc == -2 || (rc == 0 && r.status == 408));
	CHECK_INT(took, >=, 900);
	CHECK_INT(took, <, 2500);
	response_free(&r);
	CHECK(client_wait_eof(&c, 1000));
	client_close(&c);

	/* A head trickling in a byte at a time does not restart the clock. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", port), 0);
	t0 = util_now_ms();
	const char *head = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaa\r\n";
	for (size_t i = 0; head[i] && !c.eof && util_now_ms() - t0 < 4000; i++) {
		client_send(&c, head + i, 1);
		client_fill(&c, 150);
	}
	rc = client_response(&c, &r, false, 4000);
	took = util_now_ms() - t0;
	CHECK(rc == -2 || (rc == 0 && r.status == 408));
	CHECK_INT(took, <, 2500);
	response_free(&r);
	client_close(&c);

	/* Nor do empty lines, which come before any request. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", port), 0);
	t0 = util_now_ms();
	while (!c.eof && util_now_ms() - t0 < 4000) {
		client_sends(&c, "\r\n");
		client_fill(&c, 200);
	}
	took = util_now_ms() - t0;
	CHECK(c.eof);
	CHECK_INT(took, <, 2500);
	client_close(&c);

	/* An idle keep-alive connection is closed after the timeout. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", port), 0);
	client_sends(&c, GET("/hello"));
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	t0 = util_now_ms();
	CHECK(client_wait_eof(&c, 4000));
	took = util_now_ms() - t0;
	CHECK_INT(took, >=, 800);
	CHECK_INT(took, <, 2500);
	client_close(&c);

	/* A connection that never sends anything, too. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", port), 0);
	CHECK(client_wait_eof(&c, 4000));
	client_close(&c);
}

/* --- Record checks for accepted odd forms ---------------------------------------------------- */

static void test_records(void)
{
	char *line = record_find(resp.record, "\"query_string\":b\"abs=1\"", T);
	CHECK(line && strstr(line, "\"path\":\"/hello\"") &&
	      strstr(line, "\"headers\":[[b\"host\",b\"example.com\"]]"));
	free(line);
	line = record_find(resp.record, "\"method\":\"OPTIONS\"", T);
	CHECK(line && strstr(line, "\"path\":\"*\""));
	free(line);
	line = record_find(resp.record, "\"path\":\"/\xe2\x82\xac\"", T);
	CHECK(line != NULL);
	free(line);
	line = record_find(resp.record, "\"path\":\"/a%zz%4\"", T);
	CHECK(line != NULL);
	free(line);
	line = record_find(resp.record, "\"query_string\":b\"fold=1\"", 0);
	if (line) /* accepted: the fold became spaces (RFC 9112 §5.2) */
		CHECK(strstr(line, "[b\"x-fold\",b\"a b\"]") ||
		      strstr(line, "[b\"x-fold\",b\"a  b\"]"));
	free(line);
	line = record_find(resp.record, "[b\"x-a\",b\"\\xe9\\xff\"]", T);
	CHECK(line != NULL);
	free(line);
}

/* A chunked body over --max-body after part of it went to the application on a body_channel:
 * the application must hear {closed: true} rather than wait for the rest. (this instance:
 * --body-chunk 4096 --max-body 100000) */
static void test_streamed_body_refused(int port)
{
	struct buf b;
	buf_init(&b);
	buf_append_str(&b, "POST /body-channel HTTP/1.1\r\nHost: x\r\n" TE "\r\n");
	char chunk[10000];
	memset(chunk, 'c', sizeof(chunk));
	for (int i = 0; i < 11; i++) {
		buf_printf(&b, "%zx\r\n", sizeof(chunk));
		buf_append(&b, chunk, sizeof(chunk));
		buf_append_str(&b, "\r\n");
	}
	buf_append_str(&b, "0\r\n\r\n");
	char *got = http_outcome(port, b.data, b.len, 3000, false);
	CHECK_STR(got, "413,EOF");
	free(got);
	buf_fini(&b);
	CHECK(file_wait(resp.proc.log, "client went away while sending its body", 3000));
	/* And the application is free for the next request at once. */
	struct response r;
	int64_t t0 = util_now_ms();
	CHECK_EQ(http_once("127.0.0.1", port, GET("/hello"), &r, 10000), 200);
	CHECK_INT(util_now_ms() - t0, <, 2000);
	response_free(&r);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test-http-conformance RESPONDER INTERFACE\n");
		return 2;
	}
	responder_exe = argv[1];
	iface_exe = argv[2];
	h_init("test-http-conformance");
	bool up = test_redis_start(&redis) == 0 &&
		  responder_start(&resp, responder_exe, "responder", redis.port, false) == 0;
	const char *args[] = {"--max-uri",  "256",	     "--max-header-size",
			      "1024",	    "--max-headers", "20",
			      "--max-body", "100000",	     NULL};
	const char *slow_args[] = {"--header-timeout", "1", NULL};
	const char *stream_args[] = {"--max-body", "100000", "--body-chunk", "4096", NULL};
	up = up &&
	     iface_start(&conf_if, iface_exe, "if-conf", redis.port, test_free_port(), args) == 0;
	up = up && iface_start(&slow_if, iface_exe, "if-slow", redis.port, test_free_port(),
			       slow_args) == 0;
	up = up && iface_start(&stream_if, iface_exe, "if-stream", redis.port, test_free_port(),
			       stream_args) == 0;
	CHECK(up);
	if (up) {
		run_cases(conf_if.port, request_line, ARRAY_SIZE(request_line));
		run_cases(conf_if.port, header_syntax, ARRAY_SIZE(header_syntax));
		run_cases(conf_if.port, content_length, ARRAY_SIZE(content_length));
		run_cases(conf_if.port, smuggling, ARRAY_SIZE(smuggling));
		run_cases(conf_if.port, keep_alive, ARRAY_SIZE(keep_alive));
		test_limits(conf_if.port);
		test_records();
		test_slow_clients(slow_if.port);
		/* Last: if it fails, the responder may be stuck on the body channel for a while. */
		test_streamed_body_refused(stream_if.port);
		/* Nothing smuggled ever reached the application (everything before was answered, so
		 * the record is complete). */
		CHECK_EQ(record_count(resp.record, "\"path\":\"/smuggled\""), 0);
		CHECK(proc_alive(&conf_if.proc));
	}
	struct proc *procs[] = {&conf_if.proc, &slow_if.proc, &stream_if.proc};
	procs_stop_checked(procs, ARRAY_SIZE(procs));
	proc_stop(&resp.proc, SIGTERM, 5000);
	test_redis_cleanup(&redis);
	h_cleanup();
	return test_done();
}
