/* laurel-interface over HTTP/1.1 against a real redis-server and the test responder (which plays a
 * Channels 1 worker): the http.request messages (SPEC §4) checked field by field from the
 * responder's record, responses byte for byte, keep-alive, pipelining, 100-continue, large bodies
 * both ways, http.disconnect, the access log, the failure paths (timeouts, full queue, Redis down
 * and back), unix sockets, IPv6, proxy headers, connection limits, SIGTERM drain and
 * --reuse-port.
 *
 * argv: laurel-test-responder, laurel-interface. */
#include "tests/integration/interface/harness.h"
#include "tests/lib/test.h"

#include "common/util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T 5000 /* ms: how long any single answer may take */

static const char *responder_exe, *iface_exe;
static struct test_redis redis;
static struct responder resp;
static struct iface main_if;
static char access_path[512];

/* Everything started, so that every path out stops it. */
static struct proc *procs[32];
static size_t nprocs;
static struct test_redis *redises[4];
static size_t nredises;

static void track(struct proc *p)
{
	procs[nprocs++] = p;
}

static void stop_all(void)
{
	for (size_t i = 0; i < nprocs; i++) {
		if (test_failures && procs[i]->pid > 0 && strstr(procs[i]->name, "if"))
			proc_dump(procs[i]);
		proc_stop(procs[i], SIGTERM, 5000);
	}
	nprocs = 0;
	for (size_t i = 0; i < nredises; i++)
		test_redis_cleanup(redises[i]);
	nredises = 0;
}

static void setup_failed(const char *what)
{
	fprintf(stderr, "setup failed: %s\n", what);
	test_failures++;
	stop_all();
	h_cleanup();
	exit(test_done());
}

static int start_iface(struct iface *f, const char *name, int redis_port, int port,
		       const char *const *args)
{
	int rc = iface_start(f, iface_exe, name, redis_port, port, args);
	track(&f->proc);
	return rc;
}

/* A reply channel prefix as SPEC §5 has it: "laurel.response." + 10 letters + "!". */
static bool prefix_ok(const char *p)
{
	const char *s = "laurel.response.";
	if (strncmp(p, s, strlen(s)) != 0)
		return false;
	p += strlen(s);
	for (int i = 0; i < 10; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z')))
			return false;
	return strcmp(p + 10, "!") == 0;
}

/* The disconnect record line for the request recorded in line must show up (or not). */
static void check_disconnect(const char *record, const char *line, const char *path_json)
{
	char rc[128], want[512];
	record_reply_channel(line, rc, sizeof(rc));
	snprintf(want, sizeof(want), "{\"channel\":\"http.disconnect\",\"reply_channel\":\"%s\",",
		 rc);
	char *d = record_find(record, want, T);
	snprintf(want, sizeof(want),
		 "{\"channel\":\"http.disconnect\",\"reply_channel\":\"%s\",\"path\":%s}", rc,
		 path_json);
	CHECK_STR(d, want);
	free(d);
}

static bool starts_with(const char *s, const char *prefix)
{
	if (s && strncmp(s, prefix, strlen(prefix)) == 0)
		return true;
	fprintf(stderr, "\"%s\" does not start with \"%s\"\n", s ? s : "(null)", prefix);
	return false;
}

static bool date_ok(const char *date)
{
	struct tm tm = {0};
	const char *end = date ? strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm) : NULL;
	if (!end || *end)
		return false;
	time_t t = timegm(&tm);
	return llabs((long long)(t - time(NULL))) <= 5;
}

/* --- A. The http.request message ------------------------------------------------------------- */

static void test_request_message(void)
{
	struct client c;
	struct response r;
	char rest[2048], *line;
	CHECK(prefix_ok(main_if.prefix));

	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	int cport = client_port(&c);
	client_sends(&c, "GET /caf%C3%A9/a%20b%2Fc?x=1&y=%20+z%C3 HTTP/1.1\r\n"
			 "Host: h.example\r\nX-Dup: 1\r\nUser_Agent: spoof\r\nX-UPPER:  V a l \r\n"
			 "X-Dup: 2\r\nX-High: \xc3\xa9\x80\r\nEmpty:\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_EQ(r.status, 404);
	CHECK_STR(r.body, "not found");
	response_free(&r);
	line = record_find(resp.record, "\"query_string\":b\"x=1&y=%20+z%C3\"", T);
	snprintf(rest, sizeof(rest),
		 ",\"http_version\":\"1.1\",\"method\":\"GET\",\"path\":\"/caf\xc3\xa9/a b/c\","
		 "\"root_path\":\"\",\"scheme\":\"http\",\"query_string\":b\"x=1&y=%%20+z%%C3\","
		 "\"headers\":[[b\"host\",b\"h.example\"],[b\"x-dup\",b\"1\"],[b\"x-upper\",b\"V a "
		 "l\"],[b\"x-dup\",b\"2\"],[b\"x-high\",b\"\\xc3\\xa9\\x80\"],[b\"empty\",b\"\"]],"
		 "\"body\":b\"\",\"client\":[\"127.0.0.1\",%d],\"server\":[\"127.0.0.1\",%d]}",
		 cport, main_if.port);
	CHECK(record_request_is(line, main_if.prefix, rest));
	check_disconnect(resp.record, line, "\"/caf\xc3\xa9/a b/c\"");
	free(line);
	client_close(&c);

	/* HTTP/1.0 with a body: version "1.0", body bytes, connection closed after. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	cport = client_port(&c);
	static const char post10[] =
		"POST /echo?v10 HTTP/1.0\r\nHost: h\r\nContent-Length: 7\r\n\r\nhe\x00l\"\\o";
	client_send(&c, post10, sizeof(post10) - 1);
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_MEM(r.body, r.bodylen, "he\x00l\"\\o", 7);
	char *conn = response_header(&r, "connection");
	CHECK_STR(conn, "close");
	free(conn);
	CHECK(client_wait_eof(&c, T));
	response_free(&r);
	line = record_find(resp.record, "\"query_string\":b\"v10\"", T);
	snprintf(rest, sizeof(rest),
		 ",\"http_version\":\"1.0\",\"method\":\"POST\",\"path\":\"/"
		 "echo\",\"root_path\":\"\","
		 "\"scheme\":\"http\",\"query_string\":b\"v10\",\"headers\":[[b\"host\",b\"h\"],"
		 "[b\"content-length\",b\"7\"]],\"body\":b\"he\\x00l\\\"\\\\o\",\"client\":["
		 "\"127.0.0.1\",%d],\"server\":[\"127.0.0.1\",%d]}",
		 cport, main_if.port);
	CHECK(record_request_is(line, main_if.prefix, rest));
	free(line);
	client_close(&c);

	/* A NUL decoded into the path: valid UTF-8, so it is kept, in http.disconnect too. */
	CHECK_EQ(http_once("127.0.0.1", main_if.port,
			   "GET /a%00b?nul=1 HTTP/1.1\r\nHost: h\r\n\r\n", &r, T),
		 404);
	response_free(&r);
	line = record_find(resp.record, "\"query_string\":b\"nul=1\"", T);
	CHECK(line && strstr(line, "\"path\":\"/a\\u0000b\""));
	check_disconnect(resp.record, line, "\"/a\\u0000b\"");
	free(line);

	/* A request from curl, as the catalog's capture was made. */
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello?from=curl", main_if.port);
	const char *argv[] = {"/usr/bin/curl", "-s", "--max-time", "10", url, NULL};
	int st;
	char *out = run_capture(argv, &st, 15000);
	CHECK_EQ(st, 0);
	CHECK_STR(out, "hello");
	free(out);
	line = record_find(resp.record, "\"query_string\":b\"from=curl\"", T);
	CHECK(line && strstr(line, ",\"headers\":[[b\"host\",b\"127.0.0.1:") &&
	      strstr(line, "[b\"user-agent\",b\"curl/") && strstr(line, "[b\"accept\",b\"*/*\"]]"));
	free(line);
}

/* --- B. Responses ---------------------------------------------------------------------------- */

static void test_responses(void)
{
	struct client c;
	struct response r;
	char *h;

	/* /hello, byte for byte (but the date). */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_head_nodate(&r);
	CHECK_STR(h, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: DATE\r\nServer: "
		     "laurel\r\nContent-Length: 5\r\n\r\n");
	free(h);
	CHECK_STR(r.body, "hello");
	h = response_header(&r, "date");
	CHECK(date_ok(h));
	free(h);
	response_free(&r);

	/* Keep-alive: more requests on the same connection; HEAD has no body. */
	client_sends(&c, "HEAD /hello HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, true, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(r.rawlen, strlen(r.head));
	response_free(&r);
	client_sends(&c, "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_head_nodate(&r);
	CHECK_STR(h, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: DATE\r\nServer: "
		     "laurel\r\nTransfer-Encoding: chunked\r\n\r\n");
	free(h);
	CHECK_STR(r.raw + strlen(r.head), "5\r\npart1\r\n5\r\npart2\r\n5\r\npart3\r\n0\r\n\r\n");
	response_free(&r);
	client_sends(&c, "HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, true, T), 0);
	CHECK_EQ(r.status, 200);
	response_free(&r);
	client_sends(&c, "GET /status/204 HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_head_nodate(&r);
	CHECK_STR(h, "HTTP/1.1 204 No Content\r\nDate: DATE\r\nServer: laurel\r\n\r\n");
	free(h);
	response_free(&r);
	client_sends(&c, "GET /header-case HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_head_nodate(&r);
	CHECK_STR(h, "HTTP/1.1 200 OK\r\nX-Custom-Header: Value\r\ncontent-type: text/plain\r\n"
		     "Date: DATE\r\nServer: laurel\r\nContent-Length: 2\r\n\r\n");
	free(h);
	CHECK_STR(r.body, "ok");
	response_free(&r);
	/* Nothing more arrived after all that (HEAD bodies were really left out). */
	CHECK_EQ(c.in.len, 0);
	CHECK_EQ(client_fill(&c, 100), -1);
	client_close(&c);

	/* /stream over HTTP/1.0: delimited by the close. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /stream HTTP/1.0\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_head_nodate(&r);
	CHECK_STR(h, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: DATE\r\nServer: "
		     "laurel\r\nConnection: close\r\n\r\n");
	free(h);
	CHECK(r.by_close);
	CHECK_STR(r.body, "part1part2part3");
	response_free(&r);
	client_close(&c);

	/* HTTP/1.0 keep-alive on request. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	h = response_header(&r, "connection");
	CHECK_STR(h, "keep-alive");
	free(h);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	client_sends(&c, "GET /hello HTTP/1.0\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.body, "hello");
	CHECK(client_wait_eof(&c, T));
	response_free(&r);
	client_close(&c);

	/* Pipelining: all written at once, answered in order. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c,
		     "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"
		     "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
		     "GET /status/201 HTTP/1.1\r\nHost: h\r\n\r\n"
		     "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"
		     "GET /headers HTTP/1.1\r\nHost: h\r\nX-Pipe: 5\r\nConnection: close\r\n\r\n");
	static const struct {
		int status;
		const char *body;
	} want[] = {{200, "part1part2part3"},
		    {200, "abc"},
		    {201, ""},
		    {200, "def"},
		    {200, "host: h\nx-pipe: 5\nconnection: close\n"}};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		CHECK_EQ(client_response(&c, &r, false, T), 0);
		CHECK_EQ(r.status, want[i].status);
		CHECK_STR(r.body, want[i].body);
		response_free(&r);
	}
	CHECK(client_wait_eof(&c, T));
	client_close(&c);

	/* Expect: 100-continue: the 100 comes before the body is sent. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
			 "Expect: 100-continue\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.raw, "HTTP/1.1 100 Continue\r\n\r\n");
	response_free(&r);
	client_sends(&c, "hello world");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "hello world");
	response_free(&r);
	client_close(&c);
}

static void test_large_bodies(void)
{
	struct client c;
	struct response r;
	char want[64];

	/* An upload of 6 MiB (above --body-chunk, so it goes through a body_channel). */
	size_t n = 6u << 20;
	char *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)(i * 7 + (i >> 13));
	snprintf(want, sizeof(want), "%zu %08x", n, (unsigned)util_crc32(data, n));
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	char head[256];
	snprintf(head, sizeof(head),
		 "POST /body-channel HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", n);
	client_sends(&c, head);
	CHECK_EQ(client_send(&c, data, n), 0);
	CHECK_EQ(client_response(&c, &r, false, 20000), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, want);
	response_free(&r);
	char *line = record_find(resp.record, "\"path\":\"/body-channel\"", T);
	CHECK(line && strstr(line, "\"body_channel\":\"http.request.body?"));
	free(line);

	/* The same body chunked, in odd pieces, on the same connection. */
	client_sends(
		&c, "POST /body-channel HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (size_t off = 0; off < n;) {
		size_t k = n - off < 100003 ? n - off : 100003;
		char sz[32];
		snprintf(sz, sizeof(sz), "%zx\r\n", k);
		client_sends(&c, sz);
		client_send(&c, data + off, k);
		client_sends(&c, "\r\n");
		off += k;
	}
	client_sends(&c, "0\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, 20000), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, want);
	response_free(&r);
	client_close(&c);

	/* With curl (which sends Expect: 100-continue for this size). */
	char path[600], url[128];
	snprintf(path, sizeof(path), "%s/upload.bin", h_tmp());
	FILE *f = fopen(path, "wb");
	fwrite(data, 1, n, f);
	fclose(f);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/body-channel", main_if.port);
	char at[610];
	snprintf(at, sizeof(at), "@%s", path);
	const char *argv[] = {"/usr/bin/curl", "-s", "--max-time", "20",
			      "--data-binary", at,   url,	   NULL};
	int st;
	char *out = run_capture(argv, &st, 25000);
	CHECK_EQ(st, 0);
	CHECK_STR(out, want);
	free(out);
	free(data);

	/* A 5 MB download, chunked, then with a Content-Length. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /big?n=5000000 HTTP/1.1\r\nHost: h\r\n\r\n"
			 "GET /big?n=5000000&cl=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(client_response(&c, &r, false, 20000), 0);
		CHECK_EQ(r.status, 200);
		CHECK_EQ(r.chunked, i == 0);
		CHECK_EQ(r.bodylen, 5000000);
		size_t bad = 0;
		for (size_t k = 0; k < r.bodylen; k++)
			bad += r.body[k] != 'x';
		CHECK_EQ(bad, 0);
		response_free(&r);
	}
	client_close(&c);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/big?n=5000000", main_if.port);
	const char *argv2[] = {"/usr/bin/curl", "-s", "--max-time", "20", url, NULL};
	out = run_capture(argv2, &st, 25000);
	CHECK_EQ(st, 0);
	CHECK_EQ(strlen(out), 5000000);
	CHECK_EQ(strspn(out, "x"), 5000000);
	free(out);
}

static void test_disconnect_and_log(void)
{
	struct client c;
	struct response r;

	/* On client loss, while the request waits for its reply. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /never?lost=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	char *line = record_find(resp.record, "\"query_string\":b\"lost=1\"", T);
	CHECK(line != NULL);
	client_close(&c);
	check_disconnect(resp.record, line, "\"/never\"");
	free(line);

	/* The access log. */
	CHECK_EQ(http_once("127.0.0.1", main_if.port, "GET /hello?al=1 HTTP/1.1\r\nHost: h\r\n\r\n",
			   &r, T),
		 200);
	response_free(&r);
	CHECK_EQ(http_once("127.0.0.1", main_if.port,
			   "GET /status/418?al=2 HTTP/1.1\r\nHost: h\r\n\r\n", &r, T),
		 418);
	response_free(&r);
	CHECK(file_wait(access_path, "?al=2", T));
	char *log = slurp(access_path);
	char *l1 = strstr(log, "\"GET /hello?al=1\"");
	CHECK(l1 != NULL);
	if (l1) {
		while (l1 > log && l1[-1] != '\n')
			l1--;
		char host[64], when[64], rest[128];
		int n = sscanf(l1, "%63s - - [%63[^]]] %127[^\n]", host, when, rest);
		CHECK_EQ(n, 3);
		CHECK_STR(host, "127.0.0.1");
		CHECK_STR(rest, "\"GET /hello?al=1\" 200 5");
		struct tm tm = {0};
		const char *e = strptime(when, "%d/%b/%Y:%H:%M:%S", &tm);
		CHECK(e && !*e);
		tm.tm_isdst = -1;
		CHECK(llabs((long long)(mktime(&tm) - time(NULL))) <= 5);
	}
	CHECK(strstr(log, "\"GET /status/418?al=2\" 418 0\n") != NULL);
	free(log);
}

/* --- C. Failure paths ------------------------------------------------------------------------ */

static void test_reply_twice_and_gone(void)
{
	struct client c;
	struct response r;
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /reply-twice HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	client_sends(&c, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	CHECK_EQ(client_fill(&c, 200), -1); /* the stray 500 never shows up */
	client_close(&c);

	/* A reply for a connection that is gone. The responder answers in order, so once the next
	 * request is answered, the late reply has reached the interface. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", main_if.port), 0);
	client_sends(&c, "GET /slow?ms=300&gone=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	char *line = record_find(resp.record, "\"query_string\":b\"ms=300&gone=1\"", T);
	CHECK(line != NULL);
	free(line);
	client_close(&c);
	CHECK_EQ(http_once("127.0.0.1", main_if.port, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n", &r,
			   T),
		 200);
	response_free(&r);
	CHECK(proc_alive(&main_if.proc));
}

static void test_timeout_and_no_disconnect(void)
{
	static struct iface f;
	const char *args[] = {"-t", "1", "--no-http-disconnect", NULL};
	if (start_iface(&f, "if-timeout", redis.port, test_free_port(), args) < 0) {
		CHECK(!"if-timeout started");
		return;
	}
	struct response r;
	int64_t t0 = util_now_ms();
	CHECK_EQ(http_once("127.0.0.1", f.port, "GET /never HTTP/1.1\r\nHost: h\r\n\r\n", &r, T),
		 503);
	int64_t took = util_now_ms() - t0;
	CHECK_INT(took, >=, 900);
	CHECK_INT(took, <, 3000);
	CHECK(starts_with(r.body, "Worker server failed to respond within time limit."));
	response_free(&r);

	/* No http.disconnect from this one: once main's disconnect (sent later) is recorded, this
	 * one's would be there too. */
	CHECK_EQ(http_once("127.0.0.1", f.port, "GET /hello?nodisc=1 HTTP/1.1\r\nHost: h\r\n\r\n",
			   &r, T),
		 200);
	response_free(&r);
	char *mine = record_find(resp.record, "\"query_string\":b\"nodisc=1\"", T);
	CHECK_EQ(http_once("127.0.0.1", main_if.port,
			   "GET /hello?nodisc=2 HTTP/1.1\r\nHost: h\r\n\r\n", &r, T),
		 200);
	response_free(&r);
	char *theirs = record_find(resp.record, "\"query_string\":b\"nodisc=2\"", T);
	check_disconnect(resp.record, theirs, "\"/hello\"");
	char rc[128], needle[256];
	record_reply_channel(mine, rc, sizeof(rc));
	snprintf(needle, sizeof(needle), "\"channel\":\"http.disconnect\",\"reply_channel\":\"%s\"",
		 rc);
	CHECK(rc[0] != '\0');
	CHECK_EQ(record_count(resp.record, needle), 0);
	free(mine);
	free(theirs);
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 12000), 0);
}

static void test_queue_full(void)
{
	static struct iface f;
	const char *args[] = {"--prefix", "full:", "--capacity", "2", NULL};
	if (start_iface(&f, "if-full", redis.port, test_free_port(), args) < 0) {
		CHECK(!"if-full started");
		return;
	}
	struct client a, b;
	CHECK_EQ(client_tcp(&a, "127.0.0.1", f.port), 0);
	CHECK_EQ(client_tcp(&b, "127.0.0.1", f.port), 0);
	client_sends(&a, "GET /never HTTP/1.1\r\nHost: h\r\n\r\n");
	client_sends(&b, "GET /never HTTP/1.1\r\nHost: h\r\n\r\n");
	int64_t deadline = util_now_ms() + T;
	while (strcmp(test_redis_cmd(&redis, "LLEN full:http.request"), "2") != 0 &&
	       util_now_ms() < deadline)
		h_sleep_ms(5);
	CHECK_STR(test_redis_cmd(&redis, "LLEN full:http.request"), "2");
	struct response r;
	int64_t t0 = util_now_ms();
	CHECK_EQ(http_once("127.0.0.1", f.port, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n", &r, T),
		 503);
	CHECK_INT(util_now_ms() - t0, <, 1000);
	CHECK(starts_with(r.body, "Request queue full."));
	response_free(&r);
	client_close(&a);
	client_close(&b);
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 12000), 0);
}

static void test_redis_down(void)
{
	static struct test_redis r2;
	if (test_redis_start(&r2) < 0) {
		CHECK(!"second redis started");
		return;
	}
	redises[nredises++] = &r2;
	static struct responder resp2;
	static struct iface f;
	if (responder_start(&resp2, responder_exe, "responder2", r2.port, false) < 0) {
		CHECK(!"responder2 started");
		return;
	}
	track(&resp2.proc);
	const char *args[] = {NULL};
	if (start_iface(&f, "if-redis", r2.port, test_free_port(), args) < 0) {
		CHECK(!"if-redis started");
		return;
	}
	struct response r;
	const char *req = "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_EQ(http_once("127.0.0.1", f.port, req, &r, T), 200);
	response_free(&r);
	test_redis_stop(&r2, 0);
	int64_t t0 = util_now_ms();
	CHECK_EQ(http_once("127.0.0.1", f.port, req, &r, T), 503);
	CHECK_INT(util_now_ms() - t0, <, 1000);
	response_free(&r);
	/* A second one while it is down, on a connection of its own. */
	t0 = util_now_ms();
	CHECK_EQ(http_once("127.0.0.1", f.port, req, &r, T), 503);
	CHECK_INT(util_now_ms() - t0, <, 1000);
	response_free(&r);
	CHECK_EQ(test_redis_restart(&r2), 0);
	t0 = util_now_ms();
	int status = 0;
	while (util_now_ms() - t0 < 10000) {
		status = http_once("127.0.0.1", f.port, req, &r, T);
		response_free(&r);
		if (status == 200)
			break;
		h_sleep_ms(50);
	}
	CHECK_EQ(status, 200);
	CHECK_INT(util_now_ms() - t0, <, 7000);
	CHECK(proc_alive(&f.proc));
}

/* --- Listeners ------------------------------------------------------------------------------- */

static void test_unix_socket(void)
{
	static struct iface f;
	char path[600];
	snprintf(path, sizeof(path), "%s/if.sock", h_tmp());
	const char *args[] = {"-u", path, "--root-path", "/app", NULL};
	if (start_iface(&f, "if-unix", redis.port, 0, args) < 0) {
		CHECK(!"if-unix started");
		return;
	}
	struct client c;
	int64_t deadline = util_now_ms() + T;
	while (client_unix(&c, path) < 0 && util_now_ms() < deadline)
		h_sleep_ms(5);
	CHECK(c.fd >= 0);
	if (c.fd < 0)
		return;
	client_sends(&c, "GET /hello?unix=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	struct response r;
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	client_close(&c);
	char *line = record_find(resp.record, "\"query_string\":b\"unix=1\"", T);
	CHECK(record_request_is(
		line, f.prefix,
		",\"http_version\":\"1.1\",\"method\":\"GET\",\"path\":\"/hello\","
		"\"root_path\":\"/app\",\"scheme\":\"http\",\"query_string\":b\"unix=1\","
		"\"headers\":[[b\"host\",b\"h\"]],\"body\":b\"\",\"client\":null,"
		"\"server\":null}"));
	free(line);
	const char *argv[] = {
		"/usr/bin/curl",	   "-s", "--max-time", "10", "--unix-socket", path,
		"http://localhost/stream", NULL};
	int st;
	char *out = run_capture(argv, &st, 15000);
	CHECK_EQ(st, 0);
	CHECK_STR(out, "part1part2part3");
	free(out);
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 12000), 0);
	CHECK(access(path, F_OK) != 0); /* removed at exit */
}

static void test_ipv6_proxy_headers(void)
{
	static struct iface f;
	int port = test_free_port();
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	const char *args2[] = {"-b", "::1", "-p", portstr, "--proxy-headers", NULL};
	if (start_iface(&f, "if-ipv6", redis.port, 0, args2) < 0) {
		CHECK(!"if-ipv6 started");
		return;
	}
	struct client c;
	int64_t deadline = util_now_ms() + T;
	while (client_tcp(&c, "::1", port) < 0 && util_now_ms() < deadline)
		h_sleep_ms(5);
	CHECK(c.fd >= 0);
	if (c.fd < 0)
		return;
	int cport = client_port(&c);
	client_sends(&c, "GET /hello?v6=1 HTTP/1.1\r\nHost: [::1]\r\n\r\n");
	struct response r;
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	client_sends(&c, "GET /hello?v6=2 HTTP/1.1\r\nHost: [::1]\r\n"
			 "X-Forwarded-For: 10.1.2.3, 10.0.0.1\r\nX-Forwarded-Port: 8443\r\n"
			 "X-Forwarded-Proto: https\r\n\r\n");
	CHECK_EQ(client_response(&c, &r, false, T), 0);
	CHECK_STR(r.body, "hello");
	response_free(&r);
	client_close(&c);
	char rest[1024];
	char *line = record_find(resp.record, "\"query_string\":b\"v6=1\"", T);
	snprintf(rest, sizeof(rest),
		 ",\"http_version\":\"1.1\",\"method\":\"GET\",\"path\":\"/hello\",\"root_path\":"
		 "\"\",\"scheme\":\"http\",\"query_string\":b\"v6=1\",\"headers\":[[b\"host\","
		 "b\"[::1]\"]],\"body\":b\"\",\"client\":[\"::1\",%d],\"server\":[\"::1\",%d]}",
		 cport, port);
	CHECK(record_request_is(line, f.prefix, rest));
	free(line);
	line = record_find(resp.record, "\"query_string\":b\"v6=2\"", T);
	snprintf(
		rest, sizeof(rest),
		",\"http_version\":\"1.1\",\"method\":\"GET\",\"path\":\"/hello\",\"root_path\":"
		"\"\",\"scheme\":\"https\",\"query_string\":b\"v6=2\",\"headers\":[[b\"host\","
		"b\"[::1]\"],[b\"x-forwarded-for\",b\"10.1.2.3, 10.0.0.1\"],[b\"x-forwarded-port\","
		"b\"8443\"],[b\"x-forwarded-proto\",b\"https\"]],\"body\":b\"\",\"client\":["
		"\"10.1.2.3\",8443],\"server\":[\"::1\",%d]}",
		port);
	CHECK(record_request_is(line, f.prefix, rest));
	free(line);
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 12000), 0);
}

static void test_max_connections(void)
{
	static struct iface f;
	const char *args[] = {"--max-connections", "2", NULL};
	if (start_iface(&f, "if-maxconn", redis.port, test_free_port(), args) < 0) {
		CHECK(!"if-maxconn started");
		return;
	}
	/* iface_start's probe connection may still count for a moment: wait until two fit. */
	struct client a, b, c;
	struct response r;
	const char *req = "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n";
	CHECK_EQ(client_tcp(&a, "127.0.0.1", f.port), 0);
	client_sends(&a, req);
	int64_t deadline = util_now_ms() + T;
	for (;;) {
		CHECK_EQ(client_tcp(&b, "127.0.0.1", f.port), 0);
		client_sends(&b, req);
		if (client_response(&b, &r, false, T) == 0 && r.status == 200)
			break;
		response_free(&r);
		client_close(&b);
		if (util_now_ms() > deadline)
			break;
		h_sleep_ms(10);
	}
	response_free(&r);
	CHECK_EQ(client_response(&a, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	response_free(&r);
	/* Both stay open (keep-alive): a third is refused. */
	CHECK_EQ(client_tcp(&c, "127.0.0.1", f.port), 0);
	client_sends(&c, req);
	int rc = client_response(&c, &r, false, T);
	CHECK(rc == -2 || (rc == 0 && r.status == 503));
	response_free(&r);
	CHECK(client_wait_eof(&c, T));
	client_close(&c);
	/* After one leaves, there is room again. */
	client_close(&a);
	int status = 0;
	deadline = util_now_ms() + T;
	while (status != 200 && util_now_ms() < deadline) {
		status = http_once("127.0.0.1", f.port, req, &r, T);
		response_free(&r);
	}
	CHECK_EQ(status, 200);
	client_close(&b);
	CHECK_EQ(proc_stop(&f.proc, SIGTERM, 12000), 0);
}

/* --- F. SIGTERM and --reuse-port ------------------------------------------------------------- */

static void test_sigterm(void)
{
	static struct iface f;
	const char *args[] = {"--drain-timeout", "5", NULL};
	if (start_iface(&f, "if-drain", redis.port, test_free_port(), args) < 0) {
		CHECK(!"if-drain started");
		return;
	}
	struct client a, b, idle;
	CHECK_EQ(client_tcp(&idle, "127.0.0.1", f.port), 0);
	CHECK_EQ(client_tcp(&a, "127.0.0.1", f.port), 0);
	client_sends(&a, "GET /slow?ms=1500&drain=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	char *line = record_find(resp.record, "\"query_string\":b\"ms=1500&drain=1\"", T);
	CHECK(line != NULL);
	free(line);
	int64_t t0 = util_now_ms();
	kill(f.proc.pid, SIGTERM);
	CHECK(file_wait(f.proc.log, "draining", T));
	/* An idle keep-alive connection is closed at once. */
	CHECK(client_wait_eof(&idle, 1000));
	client_close(&idle);
	/* A new connection is refused (not left hanging until the drain ends). */
	int rc = client_tcp(&b, "127.0.0.1", f.port);
	if (rc == 0) {
		client_sends(&b, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n");
		struct response r;
		int k = client_response(&b, &r, false, 1000);
		CHECK(k == -2 || (k == 0 && r.status == 503));
		if (k == -1)
			fprintf(stderr,
				"after SIGTERM, a new connection hangs without an answer\n");
		response_free(&r);
		client_close(&b);
	}
	/* The request in flight completes. */
	struct response r;
	CHECK_EQ(client_response(&a, &r, false, T), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "hello");
	char *conn = response_header(&r, "connection");
	CHECK_STR(conn, "close");
	free(conn);
	response_free(&r);
	client_close(&a);
	CHECK_EQ(proc_stop(&f.proc, 0, 6000), 0);
	CHECK_INT(util_now_ms() - t0, <, 5000);
	CHECK(client_tcp(&b, "127.0.0.1", f.port) < 0);
}

static void test_reuse_port(void)
{
	static struct iface f1, f2;
	int port = test_free_port();
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	const char *args[] = {"--reuse-port", NULL};
	if (start_iface(&f1, "if-reuse1", redis.port, port, args) < 0 ||
	    start_iface(&f2, "if-reuse2", redis.port, port, args) < 0) {
		CHECK(!"if-reuse started");
		return;
	}
	struct response r;
	for (int i = 0; i < 40; i++) {
		CHECK_EQ(http_once("127.0.0.1", port, "GET /hello?rp=1 HTTP/1.1\r\nHost: h\r\n\r\n",
				   &r, T),
			 200);
		response_free(&r);
	}
	char needle[256];
	snprintf(needle, sizeof(needle), "\"http.request\",\"reply_channel\":\"%s", f1.prefix);
	int n1 = record_count(resp.record, needle);
	snprintf(needle, sizeof(needle), "\"http.request\",\"reply_channel\":\"%s", f2.prefix);
	int n2 = record_count(resp.record, needle);
	CHECK_EQ(n1 + n2, 40);
	CHECK_INT(n1, >, 0);
	CHECK_INT(n2, >, 0);
	CHECK_EQ(proc_stop(&f1.proc, SIGTERM, 12000), 0);
	for (int i = 0; i < 10; i++) {
		CHECK_EQ(http_once("127.0.0.1", port, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n", &r,
				   T),
			 200);
		response_free(&r);
	}
	CHECK_EQ(proc_stop(&f2.proc, SIGTERM, 12000), 0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: test-http RESPONDER INTERFACE\n");
		return 2;
	}
	responder_exe = argv[1];
	iface_exe = argv[2];
	h_init("test-http");
	if (test_redis_start(&redis) < 0)
		setup_failed("redis-server");
	redises[nredises++] = &redis;
	if (responder_start(&resp, responder_exe, "responder", redis.port, true) < 0)
		setup_failed("responder");
	track(&resp.proc);
	snprintf(access_path, sizeof(access_path), "%s/access.log", h_tmp());
	const char *args[] = {"--access-log", access_path, "--body-chunk", "64k", "-t", "20", NULL};
	if (start_iface(&main_if, "if-main", redis.port, test_free_port(), args) < 0)
		setup_failed("laurel-interface");

	test_request_message();
	test_responses();
	test_large_bodies();
	test_disconnect_and_log();
	test_reply_twice_and_gone();
	test_timeout_and_no_disconnect();
	test_queue_full();
	test_unix_socket();
	test_ipv6_proxy_headers();
	test_max_connections();
	test_sigterm();
	test_reuse_port();
	test_redis_down();

	CHECK(proc_alive(&main_if.proc));
	CHECK_EQ(proc_stop(&main_if.proc, SIGTERM, 12000), 0);
	stop_all();
	h_cleanup();
	return test_done();
}
