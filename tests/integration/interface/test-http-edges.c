/* laurel-interface at the edges of HTTP/1.1, over raw sockets (RFC 9110/9112): clients that
 * half-close after their requests, answers sent before the request body was read (lingering
 * close), and the statuses an unusual request gets. Outcomes are written as in
 * test-http-conformance.c (see http_outcome in harness.h).
 *
 * argv: laurel-test-responder, laurel-interface, laurel (for the development server's static
 * files). */
#include "tests/integration/interface/harness.h"
#include "tests/lib/test.h"

#include "common/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GET(target) "GET " target " HTTP/1.1\r\nHost: x\r\n\r\n"

static const char *responder_exe, *iface_exe;
static struct test_redis redis;
static struct responder resp;
static struct iface small_if, stream_if, timeout_if;

struct kase {
	const char *name;
	const char *req;
	const char *ok;
};

static void run_cases(int port, const struct kase *cases, size_t n, bool half_close)
{
	for (size_t i = 0; i < n; i++) {
		const struct kase *k = &cases[i];
		char *got = http_outcome(port, k->req, strlen(k->req), 3000, half_close);
		test_checks++;
		if (strcmp(got, k->ok) != 0)
			test_fail(__FILE__, __LINE__, "case \"%s\": got \"%s\", expected \"%s\"",
				  k->name, got, k->ok);
		free(got);
	}
}

/* --- Half-close: the client sends its requests, then FIN, then reads ------------------------ */

static const struct kase half_close[] = {
	{"one request", GET("/hello"), "200:hello,EOF"},
	{"three pipelined", GET("/hello") GET("/hello") GET("/hello"),
	 "200:hello,200:hello,200:hello,EOF"},
	{"a slow answer", GET("/slow?ms=300"), "200:hello,EOF"},
	{"a streamed answer", GET("/stream"), "200:part1part2part3,EOF"},
	{"with a body", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
	 "200:abcde,EOF"},
	{"a chunked body",
	 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	 "200:abc,EOF"},
	{"HTTP/1.0", "GET /hello HTTP/1.0\r\n\r\n", "200:hello,EOF"},
	{"then half a request", GET("/hello") "GET /hel", "200:hello,EOF"},
	{"half a head", "GET /hello HTTP/1.1\r\nHo", "EOF"},
	{"half a body", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde", "EOF"},
};

static void test_half_close_streamed_body(int port)
{
	/* A body larger than --body-chunk goes on a body channel; the FIN comes right after it. */
	struct buf b;
	buf_init(&b);
	buf_append_str(&b, "POST /body-channel HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n");
	for (int i = 0; i < 20000; i++)
		buf_append(&b, "z", 1);
	char *got = http_outcome(port, b.data, b.len, 5000, true);
	uint32_t crc = util_crc32(b.data + b.len - 20000, 20000);
	char want[64];
	snprintf(want, sizeof(want), "200:20000 %08x,EOF", crc);
	CHECK_STR(got, want);
	free(got);
	buf_fini(&b);
}

/* --- Statuses of unusual requests (each on a new connection, then a sentinel request) -------- */

#define SENT "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#define BAD500 "500:The application sent an invalid response.\n,EOF"
#define GETH(host) "GET /hello HTTP/1.1\r\nHost: " host "\r\n\r\n" SENT

static const struct kase statuses[] = {
	/* Host must be host[:port] (RFC 9110 §7.2); empty is allowed */
	{"Host with a space", GETH("a b"), "400,EOF"},
	{"Host with a path", GETH("x/y"), "400,EOF"},
	{"Host with a bad port", GETH("x:abc"), "400,EOF"},
	{"Host with a port above 65535", GETH("x:99999"), "400,EOF"},
	{"Host with userinfo", GETH("user@x"), "400,EOF"},
	{"Host with an open IPv6 literal", GETH("[::1"), "400,EOF"},
	{"Host empty", GETH(""), "200:hello,200:hello,EOF"},
	{"Host IPv6 and port", GETH("[::1]:8000"), "200:hello,200:hello,EOF"},
	/* RFC 9112 §3.2.2: the absolute-form target's authority is the host */
	{"absolute-form authority replaces Host",
	 "GET http://other.example:81/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	 "200:host: other.example:81\nconnection: close\n,EOF"},
	{"absolute-form with userinfo",
	 "GET http://u@h/headers HTTP/1.1\r\nHost: x\r\n\r\n" SENT, "400,EOF"},
	/* RFC 9112 §6.1 */
	{"HTTP/1.0 with Transfer-Encoding",
	 "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" SENT,
	 "400,EOF"},
	/* a request line without a version is no HTTP/1.x request: 400, not 505 */
	{"no version", "GET /hello\r\n\r\n" SENT, "400,EOF"},
	/* RFC 9110 §9.1, §9.3.6: a method we do not implement is 501, not "malformed" */
	{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" SENT,
	 "501,EOF"},
	{"unknown method", "FROB /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT, "501,EOF"},
	{"a method with a bad byte", "G{T /hello HTTP/1.1\r\nHost: x\r\n\r\n" SENT, "400,EOF"},
	/* the application's Content-Length is checked, never passed on unchecked */
	{"Content-Length right", GET("/length?cl=5") SENT, "200:hello,200:hello,EOF"},
	{"Content-Length short", GET("/length?cl=4") SENT, BAD500},
	{"Content-Length long", GET("/length?cl=6") SENT, BAD500},
	{"Content-Length malformed", GET("/length?bad=1") SENT, BAD500},
	{"Content-Length twice", GET("/length?twice=1") SENT, BAD500},
	{"streamed, Content-Length right", GET("/length?cl=15&stream=1") SENT,
	 "200:part1part2part3,200:hello,EOF"},
	/* a streamed body past its length is cut there and the connection closed */
	{"streamed, Content-Length short", GET("/length?cl=10&stream=1") SENT,
	 "200:part1part2,EOF"},
	/* one that ends short closes the connection: the client sees the body cut */
	{"streamed, Content-Length long", GET("/length?cl=20&stream=1") SENT,
	 "PARTIAL[HTTP/1.1 200 OK\r\nContent-Length: 20\r\nDate: DATE\r\nServer: laurel\r\n\r\n"
	 "part1part2part3],EOF"},
};

/* An outcome with the Date header's value replaced by DATE. */
static void run_status_cases(int port)
{
	for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
		const struct kase *k = &statuses[i];
		char *got = http_outcome(port, k->req, strlen(k->req), 3000, false);
		char *d = strstr(got, "Date: ");
		if (d) {
			char *e = strstr(d, "\r\n");
			if (e)
				memmove(d + 10, e, strlen(e) + 1), memcpy(d + 6, "DATE", 4);
		}
		test_checks++;
		if (strcmp(got, k->ok) != 0)
			test_fail(__FILE__, __LINE__, "case \"%s\": got \"%s\", expected \"%s\"",
				  k->name, got, k->ok);
		free(got);
	}
	/* Refused responses are logged (the same kind at most once a second). */
	CHECK(file_wait(small_if.proc.log, "a Content-Length that does not match its content",
			3000));
	CHECK(file_wait(small_if.proc.log, "is longer than its Content-Length", 3000));
	CHECK(file_wait(small_if.proc.log, "ended short of its Content-Length", 3000));
}

/* A request body that does not come within --http-timeout is the client's fault: 408, not 503
 * "Worker server failed to respond" (this instance: --http-timeout 1). */
static void test_slow_body(int port)
{
	int64_t t0 = util_now_ms();
	char *got = http_outcome(
		port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde",
		strlen("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde"), 5000,
		false);
	CHECK_STR(got, "408,EOF");
	CHECK_INT(util_now_ms() - t0, <, 4000);
	free(got);
	/* The application that does not answer still gets its 503. */
	got = http_outcome(port, GET("/never"), strlen(GET("/never")), 5000, false);
	CHECK_STR(got, "503:Worker server failed to respond within time limit.\n,EOF");
	free(got);
}

/* The development server's static files: a NUL in the decoded path (%00) is 404; it must not
 * cut the name short and serve another file. */
static void test_static_nul(const char *laurel_exe)
{
	char dir[600], file[700];
	snprintf(dir, sizeof(dir), "%s/files", h_tmp());
	snprintf(file, sizeof(file), "%s/secret", dir);
	CHECK_EQ(mkdir(dir, 0755), 0);
	FILE *f = fopen(file, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs("secret\n", f);
	fclose(f);
	int port = test_free_port();
	char ports[16], mount[700];
	snprintf(ports, sizeof(ports), "%d", port);
	snprintf(mount, sizeof(mount), "/s/=%s", dir);
	const char *argv[] = {laurel_exe, "runserver", "-a", "echo", "-p", ports, "--static",
			      mount, "-v", "0", NULL};
	struct proc p;
	proc_start(&p, "runserver", argv);
	struct client c;
	int64_t deadline = util_now_ms() + 10000;
	while (client_tcp(&c, "127.0.0.1", port) < 0 && util_now_ms() < deadline)
		h_sleep_ms(20);
	client_close(&c);
	struct response r;
	CHECK_EQ(http_once("127.0.0.1", port, GET("/s/secret"), &r, 3000), 200);
	CHECK_STR(r.body, "secret\n");
	response_free(&r);
	CHECK_EQ(http_once("127.0.0.1", port, GET("/s/secret%00.txt"), &r, 3000), 404);
	response_free(&r);
	CHECK_EQ(http_once("127.0.0.1", port, GET("/s/%00"), &r, 3000), 404);
	response_free(&r);
	CHECK_EQ(proc_stop(&p, SIGTERM, 10000), 0);
}

/* --- Answers before the body was read --------------------------------------------------------- */

/* Writes head, then `body` bytes of body as far as the connection takes them (without FIN), then
 * reads the outcome. The answer comes before the body is read: without a lingering close the
 * interface's close resets the connection and the client may never read the answer. */
static char *early(int port, const char *head, size_t body)
{
	struct client c;
	if (client_tcp(&c, "127.0.0.1", port) < 0)
		return xstrdup("CONNECT FAILED");
	client_sends(&c, head);
	char *data = xmalloc(body);
	memset(data, 'e', body);
	client_send(&c, data, body); /* may fail once the interface has closed */
	free(data);
	struct buf out;
	buf_init(&out);
	struct response r;
	int rc = client_response(&c, &r, false, 5000);
	if (rc == 0) {
		char *conn = response_header(&r, "connection");
		buf_printf(&out, "%d:%s,", r.status, conn ? conn : "-");
		free(conn);
		response_free(&r);
		rc = client_wait_eof(&c, 2000) ? -2 : -1;
		buf_append_str(&out, rc == -2 ? (c.reset ? "RST" : "EOF") : "TIMEOUT");
	} else {
		buf_append_str(&out, rc == -2 ? (c.reset ? "RST" : "EOF") : "TIMEOUT");
		response_free(&r);
	}
	client_close(&c);
	char *s = xstrdup(out.data);
	buf_fini(&out);
	return s;
}

static void test_early_answers(void)
{
	/* 413 from the interface (Content-Length above --max-body 100000), then 300 KB of body. */
	int lost = 0, n = 30;
	for (int i = 0; i < n; i++) {
		char *got = early(small_if.port,
				  "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
				  300000);
		if (strcmp(got, "413:close,EOF") != 0) {
			if (!lost)
				fprintf(stderr, "early 413: got \"%s\"\n", got);
			lost++;
		}
		free(got);
	}
	CHECK_EQ(lost, 0);
	/* 404 from the application, answered as soon as the first part of a 300 KB body reached it
	 * (--body-chunk 4096): the rest is still on its way. */
	lost = 0;
	for (int i = 0; i < n; i++) {
		char *got = early(stream_if.port,
				  "POST /status/404 HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n",
				  300000);
		/* The answer may also come after the whole body was read: a plain keep-alive
		 * response then (no Connection: close, the connection stays open). */
		if (strcmp(got, "404:close,EOF") != 0 && strcmp(got, "404:-,TIMEOUT") != 0) {
			if (!lost)
				fprintf(stderr, "early 404: got \"%s\"\n", got);
			lost++;
		}
		free(got);
	}
	CHECK_EQ(lost, 0);
}

/* True if the connection was closed by the other side: a byte sent now is answered with a reset,
 * which the next send reports. */
static bool gone(struct client *c)
{
	if (client_send(c, "x", 1) < 0)
		return true;
	h_sleep_ms(100);
	return client_send(c, "y", 1) < 0;
}

/* The lingering close is bounded: the interface's side closes once the client sent nothing for
 * LINGER_IDLE (2 s), and at most LINGER_TIME (5 s) after the answer however much it sends. The
 * client sees the answer and its EOF at once either way. */
static void test_linger_bounds(void)
{
	struct client c;
	CHECK_EQ(client_tcp(&c, "127.0.0.1", small_if.port), 0);
	client_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc");
	struct response r;
	CHECK_EQ(client_response(&c, &r, false, 3000), 0);
	CHECK_EQ(r.status, 413);
	response_free(&r);
	CHECK(client_wait_eof(&c, 1000));
	CHECK(!c.reset);
	h_sleep_ms(1000);
	CHECK(!gone(&c)); /* still draining: what the client sends is read and dropped */
	h_sleep_ms(3000); /* > LINGER_IDLE after the last byte */
	CHECK(gone(&c));
	client_close(&c);

	CHECK_EQ(client_tcp(&c, "127.0.0.1", small_if.port), 0);
	int64_t t0 = util_now_ms();
	client_sends(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
	char chunk[1000];
	memset(chunk, 'x', sizeof(chunk));
	bool cut = false;
	while (util_now_ms() - t0 < 9000) {
		if (client_send(&c, chunk, sizeof(chunk)) < 0) {
			cut = true;
			break;
		}
		h_sleep_ms(20);
	}
	int64_t took = util_now_ms() - t0;
	CHECK(cut);
	CHECK_INT(took, >=, 4500);
	CHECK_INT(took, <, 8000);
	client_close(&c);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: test-http-edges RESPONDER INTERFACE LAUREL\n");
		return 2;
	}
	responder_exe = argv[1];
	iface_exe = argv[2];
	h_init("test-http-edges");
	bool up = test_redis_start(&redis) == 0 &&
		  responder_start(&resp, responder_exe, "responder", redis.port, true) == 0;
	const char *small_args[] = {"--max-body", "100000", NULL};
	const char *stream_args[] = {"--body-chunk", "4096", NULL};
	const char *timeout_args[] = {"--http-timeout", "1", NULL};
	up = up && iface_start(&small_if, iface_exe, "if-small", redis.port, test_free_port(),
			       small_args) == 0;
	up = up && iface_start(&stream_if, iface_exe, "if-stream", redis.port, test_free_port(),
			       stream_args) == 0;
	up = up && iface_start(&timeout_if, iface_exe, "if-timeout", redis.port, test_free_port(),
			       timeout_args) == 0;
	CHECK(up);
	if (up) {
		run_cases(small_if.port, half_close, ARRAY_SIZE(half_close), true);
		/* The FIN told the application at once, and only once (not again after the
		 * answer). */
		char *d = record_find(resp.record, "\"channel\":\"http.disconnect\"", 3000);
		CHECK(d != NULL);
		free(d);
		h_sleep_ms(300);
		CHECK_EQ(record_count(resp.record, "\"path\":\"/slow\"}"), 1);
		test_half_close_streamed_body(stream_if.port);
		run_status_cases(small_if.port);
		test_slow_body(timeout_if.port);
		test_static_nul(argv[3]);
		test_early_answers();
		test_linger_bounds();
		CHECK(proc_alive(&small_if.proc));
		CHECK(proc_alive(&stream_if.proc));
	}
	struct proc *procs[] = {&small_if.proc, &stream_if.proc, &timeout_if.proc};
	procs_stop_checked(procs, ARRAY_SIZE(procs));
	proc_stop(&resp.proc, SIGTERM, 5000);
	test_redis_cleanup(&redis);
	h_cleanup();
	return test_done();
}
