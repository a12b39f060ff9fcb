/* interface/http1 alone: requests fed whole, one byte at a time and in odd pieces must give the
 * same requests (or the same refusal); limits; pipelined requests consumed one at a time. */
#include "interface/http1.h"
#include "common/buf.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <stdlib.h>
#include <string.h>

struct owner {
	struct http1_parser *p;
	struct buf log;	 /* what the callbacks saw */
	int head_status; /* what on_head returns */
	int body_status; /* what on_body returns */
	int completes;
};

static int on_head(void *arg, struct http1_request *r)
{
	struct owner *o = arg;
	CHECK(http1_request(o->p) == r);
	buf_printf(&o->log, "%s %s %d.%d cl=%lld ch=%d ka=%d exp=%d up=%d head=%d [", r->method,
		   r->target.data ? r->target.data : "", r->version_major, r->version_minor,
		   (long long)r->content_length, r->chunked, r->keep_alive, r->expect_continue,
		   r->upgrade, r->head);
	for (size_t i = 0; i < r->nheaders; i++) {
		CHECK_EQ(strlen(r->headers[i].name), r->headers[i].namelen);
		CHECK_EQ(strlen(r->headers[i].value), r->headers[i].valuelen);
		buf_printf(&o->log, "%s%s=%s", i ? "," : "", r->headers[i].name,
			   r->headers[i].value);
	}
	buf_append_str(&o->log, "] body=");
	return o->head_status;
}

static int on_body(void *arg, const char *data, size_t len)
{
	struct owner *o = arg;
	CHECK(http1_request(o->p) != NULL);
	buf_append(&o->log, data, len);
	return o->body_status;
}

static int on_complete(void *arg)
{
	struct owner *o = arg;
	o->completes++;
	buf_append_str(&o->log, ";\n");
	return 0;
}

static const struct http1_callbacks cbs = {on_head, on_body, on_complete};
static const struct http1_limits lim = {
	.max_uri = 64, .max_header_bytes = 256, .max_headers = 8, .max_body = 100};

/* Parses in pieces of step bytes (0: whole), going on after each request. The result: what the
 * callbacks saw, then "ERR status" if refused, then "REST n" if bytes were left unparsed. */
static char *parse(const char *in, size_t len, size_t step, int head_status)
{
	struct owner o = {.head_status = head_status};
	buf_init(&o.log);
	o.p = http1_new(&lim, &cbs, &o);
	CHECK(http1_request(o.p) == NULL);
	CHECK(!http1_busy(o.p));
	size_t off = 0;
	int stuck = 0;
	while (off < len) {
		size_t n = step && len - off > step ? step : len - off;
		int status = 0;
		ssize_t k = http1_feed(o.p, in + off, n, &status);
		if (k < 0) {
			buf_printf(&o.log, "ERR %d", status);
			/* it stays refused */
			int again = 0;
			CHECK_EQ(http1_feed(o.p, "x", 1, &again), -1);
			CHECK_EQ(again, status);
			CHECK(http1_error(o.p)[0] != '\0');
			break;
		}
		CHECK_INT(k, <=, (ssize_t)n);
		off += (size_t)k;
		if (http1_done(o.p)) {
			int st = 0;
			CHECK_EQ(http1_feed(o.p, "GET", 3, &st), 0); /* nothing until http1_next */
			http1_next(o.p);
			CHECK(!http1_done(o.p));
			CHECK(http1_request(o.p) == NULL);
			stuck = 0;
		} else if ((size_t)k < n && ++stuck > 2) {
			buf_printf(&o.log, "REST %zu", len - off);
			break;
		}
	}
	http1_free(o.p);
	char *s = xstrdup(o.log.data ? o.log.data : "");
	buf_fini(&o.log);
	return s;
}

/* Parses whole, byte by byte and in pieces of 7 and 13; all must give want. */
static void check_parse_n(const char *in, size_t len, const char *want, int head_status)
{
	static const size_t steps[] = {0, 1, 7, 13};
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		char *got = parse(in, len, steps[i], head_status);
		test_checks++;
		if (strcmp(got, want) != 0) {
			test_fail(__FILE__, __LINE__,
				  "step %zu:\n  input    %.*s\n  got      %s\n  expected %s",
				  steps[i], (int)len, in, got, want);
		}
		free(got);
	}
}

static void check_parse(const char *in, const char *want)
{
	check_parse_n(in, strlen(in), want, 0);
}

static void test_requests(void)
{
	check_parse("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Two:  a b \t\r\nEmpty:\r\n\r\n",
		    "GET /a?b=1 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [host=x,x-two=a b,empty=] "
		    "body=;\n");
	check_parse("HEAD / HTTP/1.0\r\n\r\n",
		    "HEAD / 1.0 cl=-1 ch=0 ka=0 exp=0 up=0 head=1 [] body=;\n");
	check_parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		    "GET / 1.0 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [connection=keep-alive] body=;\n");
	check_parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
		    "GET / 1.1 cl=-1 ch=0 ka=0 exp=0 up=0 head=0 [connection=close] body=;\n");
	check_parse("POST /p HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\nhello",
		    "POST /p 1.1 cl=5 ch=0 ka=1 exp=1 up=0 head=0 [content-length=5,"
		    "expect=100-Continue] body=hello;\n");
	check_parse("POST /p HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
		    "POST /p 1.0 cl=2 ch=0 ka=0 exp=0 up=0 head=0 [content-length=2,"
		    "expect=100-continue] body=hi;\n");
	check_parse("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "3;ext=\"a;b\"\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
		    "POST /c 1.1 cl=-1 ch=1 ka=1 exp=0 up=0 head=0 [transfer-encoding=chunked] "
		    "body=abcde;\n");
	check_parse("GET /u HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		    "GET /u 1.1 cl=-1 ch=0 ka=1 exp=0 up=1 head=0 [connection=upgrade,"
		    "upgrade=websocket] body=;\n");
	/* Empty lines before a request are skipped. */
	check_parse("\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		    "GET / 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [] body=;\n");
}

static void test_pipelining(void)
{
	/* Three requests at once: consumed one at a time. */
	const char *in =
		"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
		"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
	check_parse(in,
		    "GET /1 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [] body=;\n"
		    "POST /2 1.1 cl=3 ch=0 ka=1 exp=0 up=0 head=0 [content-length=3] body=abc;\n"
		    "POST /3 1.1 cl=-1 ch=1 ka=1 exp=0 up=0 head=0 [transfer-encoding=chunked] "
		    "body=z;\n");

	struct owner o = {0};
	buf_init(&o.log);
	o.p = http1_new(&lim, &cbs, &o);
	int status = 0;
	size_t first = strlen("GET /1 HTTP/1.1\r\n\r\n");
	ssize_t k = http1_feed(o.p, in, strlen(in), &status);
	CHECK_EQ(k, first);
	CHECK(http1_done(o.p));
	CHECK(http1_busy(o.p));
	CHECK_EQ(o.completes, 1);
	CHECK(http1_request(o.p) != NULL);
	CHECK_STR(http1_request(o.p)->target.data, "/1");
	CHECK_EQ(http1_feed(o.p, in + k, strlen(in) - (size_t)k, &status), 0);
	http1_next(o.p);
	CHECK(!http1_busy(o.p));
	ssize_t k2 = http1_feed(o.p, in + k, strlen(in) - (size_t)k, &status);
	CHECK_EQ(k2, strlen("POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"));
	CHECK_EQ(o.completes, 2);
	http1_next(o.p);
	/* Half of the next head: busy, no request yet. */
	CHECK_EQ(http1_feed(o.p, "GET /4 HT", 9, &status), 9);
	CHECK(http1_busy(o.p));
	CHECK(http1_request(o.p) == NULL);
	CHECK(!http1_done(o.p));
	http1_free(o.p);
	buf_fini(&o.log);
	http1_free(NULL);

	/* A request whose Upgrade the owner did not take: the next request on the connection is
	 * parsed as HTTP. */
	check_parse("GET /u HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\nGET /2 "
		    "HTTP/1.1\r\n\r\n",
		    "GET /u 1.1 cl=-1 ch=0 ka=1 exp=0 up=1 head=0 [connection=upgrade,upgrade=foo] "
		    "body=;\nGET /2 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [] body=;\n");
}

static void test_limits(void)
{
	char in[1024];
	char t[80];
	memset(t, 'a', sizeof(t));
	t[0] = '/';
	/* max_uri 64 */
	snprintf(in, sizeof(in), "GET %.64s HTTP/1.1\r\n\r\n", t);
	char want[512];
	snprintf(want, sizeof(want), "GET %.64s 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [] body=;\n",
		 t);
	check_parse(in, want);
	snprintf(in, sizeof(in), "GET %.65s HTTP/1.1\r\n\r\n", t);
	check_parse(in, "ERR 414");
	/* max_header_bytes 256: names and values */
	char v[300];
	memset(v, 'v', sizeof(v));
	snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nX: %.255s\r\n\r\n", v);
	snprintf(want, sizeof(want),
		 "GET / 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [x=%.255s] body=;\n", v);
	check_parse(in, want);
	snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nX: %.256s\r\n\r\n", v);
	check_parse(in, "ERR 431");
	/* max_headers 8 */
	check_parse(
		"GET / HTTP/1.1\r\na:1\r\nb:1\r\nc:1\r\nd:1\r\ne:1\r\nf:1\r\ng:1\r\nh:1\r\n\r\n",
		"GET / 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1] "
		"body=;\n");
	check_parse(
		"GET / "
		"HTTP/1.1\r\na:1\r\nb:1\r\nc:1\r\nd:1\r\ne:1\r\nf:1\r\ng:1\r\nh:1\r\ni:1\r\n\r\n",
		"ERR 431");
	/* max_body 100 */
	char body[120];
	memset(body, 'b', sizeof(body));
	snprintf(in, sizeof(in), "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n%.100s", body);
	snprintf(
		want, sizeof(want),
		"POST / 1.1 cl=100 ch=0 ka=1 exp=0 up=0 head=0 [content-length=100] body=%.100s;\n",
		body);
	check_parse(in, want);
	check_parse("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "ERR 413");
	snprintf(in, sizeof(in),
		 "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "40\r\n%.64s\r\n40\r\n%.64s\r\n0\r\n\r\n",
		 body, body);
	/* the body callback saw up to the limit before the refusal */
	char *got = parse(in, strlen(in), 0, 0);
	CHECK(strstr(got, "ERR 413") != NULL);
	free(got);
	got = parse(in, strlen(in), 1, 0);
	CHECK(strstr(got, "ERR 413") != NULL);
	free(got);
}

static void test_refusals(void)
{
	check_parse("GET / HTTP/2.0\r\n\r\n", "ERR 505");
	check_parse("GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "ERR 501");
	check_parse("GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "ERR 400");
	check_parse("GET / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "ERR 400");
	check_parse("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "0\r\n\r\n",
		    "ERR 400");
	check_parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		    "ERR 400");
	check_parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		    "POST / 1.1 cl=-1 ch=1 ka=1 exp=0 up=0 head=0 [transfer-encoding=chunked] "
		    "body=ERR 400");
	check_parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\n",
		    "POST / 1.1 cl=-1 ch=1 ka=1 exp=0 up=0 head=0 [transfer-encoding=chunked] "
		    "body=ERR 400");
	check_parse("GET / HTTP/1.1\nHost: x\n\n", "ERR 400");
	check_parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "ERR 400");
	check_parse("GET / HTTP/1.1\r\nX : 1\r\n\r\n", "ERR 400");
	/* Methods are case-sensitive: "get" is a well-formed method we do not know (RFC 9110
	 * §9.1: 501), whatever the split of the bytes; a method with a non-token byte is 400. */
	check_parse("get / HTTP/1.1\r\n\r\n", "ERR 501");
	check_parse("FROB / HTTP/1.1\r\n\r\n", "ERR 501");
	check_parse("PROPFINDX / HTTP/1.1\r\n\r\n", "ERR 501");
	check_parse("G(T / HTTP/1.1\r\n\r\n", "ERR 400");
	check_parse("GETTINGVERYLONGMETHODNAMEXYZ / HTTP/1.1\r\n\r\n", "ERR 400");
	check_parse("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", "ERR 501");
	/* A request line without a version is no HTTP/1.x request: 400, not 505. */
	check_parse("GET /\r\n\r\n", "ERR 400");
	/* HTTP/1.0 has no transfer codings (RFC 9112 §6.1). */
	check_parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "ERR 400");
	check_parse_n("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, "ERR 400", 0);
	/* A refusal from a callback, with its status. */
	check_parse_n("GET /x HTTP/1.1\r\n\r\n", 19,
		      "GET /x 1.1 cl=-1 ch=0 ka=1 exp=0 up=0 head=0 [] body=ERR 403", 403);
	CHECK_STR(http1_reason(404), "Not Found");
	CHECK_STR(http1_reason(431), "Request Header Fields Too Large");
	CHECK_STR(http1_reason(799), "");
}

int main(void)
{
	test_requests();
	test_pipelining();
	test_limits();
	test_refusals();
	return test_done();
}
