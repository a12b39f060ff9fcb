/* interface/asgi_http alone: request targets checked and decoded, the http.request and
 * websocket.connect messages built from a head (field order included), and response heads made
 * from reply messages. */
#include "interface/asgi_http.h"
#include "common/buf.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <stdlib.h>
#include <string.h>

/* A head as the parser would give it: "name: value" pairs, names lower case. */
struct head {
	struct http1_request h;
	struct http1_header hd[8];
};

static void make(struct head *x, const char *method, const char *target, int minor,
		 const char *const *headers)
{
	memset(x, 0, sizeof(*x));
	snprintf(x->h.method, sizeof(x->h.method), "%s", method);
	x->h.version_major = 1;
	x->h.version_minor = minor;
	buf_init(&x->h.target);
	buf_append_str(&x->h.target, target);
	for (size_t i = 0; headers && headers[i]; i += 2) {
		struct http1_header *hd = &x->hd[x->h.nheaders++];
		hd->name = (char *)headers[i];
		hd->namelen = strlen(headers[i]);
		hd->value = (char *)headers[i + 1];
		hd->valuelen = strlen(headers[i + 1]);
		if (strcmp(hd->name, "upgrade") == 0)
			x->h.upgrade = true;
	}
	x->h.headers = x->hd;
}

static const char *const host[] = {"host", "example.com", NULL};

/* "status path=... query=... ws=N" for a target. */
static char *target(const char *method, const char *t, int minor, const char *const *headers)
{
	struct head x;
	make(&x, method, t, minor, headers ? headers : host);
	struct asgi_http_target tg;
	int st = asgi_http_target(&x.h, &tg);
	struct buf out;
	buf_init(&out);
	if (st)
		buf_printf(&out, "%d", st);
	else
		buf_printf(&out, "path=%.*s(%zu) query=%.*s ws=%d", (int)tg.path.len,
			   tg.path.data ? tg.path.data : "", tg.path.len, (int)tg.querylen,
			   tg.query, tg.websocket);
	asgi_http_target_fini(&tg);
	buf_fini(&x.h.target);
	buf_append_byte(&out, 0);
	return out.data;
}

static void test_targets(void)
{
	char *s;
#define T(method, t, minor, headers, want)                                                         \
	s = target(method, t, minor, headers);                                                     \
	CHECK_STR(s, want);                                                                        \
	free(s)
	T("GET", "/a%20b/%C3%A9?x=1&y", 1, NULL, "path=/a b/\xC3\xA9(7) query=x=1&y ws=0");
	T("GET", "/", 1, NULL, "path=/(1) query= ws=0");
	T("GET", "/p?", 1, NULL, "path=/p(2) query= ws=0");
	T("GET", "/%zz%4", 1, NULL, "path=/%zz%4(6) query= ws=0"); /* not escapes: kept */
	T("GET", "http://other/x?q", 1, NULL, "path=/x(2) query=q ws=0");
	T("GET", "HTTPS://other", 1, NULL, "path=/(1) query= ws=0");
	T("OPTIONS", "*", 1, NULL, "path=*(1) query= ws=0");
	T("GET", "*", 1, NULL, "400");
	T("GET", "x/y", 1, NULL, "400");
	T("GET", "", 1, NULL, "400");
	T("GET", "/\x7f", 1, NULL, "path=/\x7f(2) query= ws=0");
	T("GET", "/\x80", 1, NULL, "400");
	T("GET", "/a b", 1, NULL, "400");
	T("GET", "/%ff", 1, NULL, "400");		       /* not UTF-8 once decoded */
	T("GET", "/%C3", 1, NULL, "400");		       /* a truncated sequence */
	T("GET", "/a%00b", 1, NULL, "path=/a(4) query= ws=0"); /* a NUL is kept (length 4) */
	static const char *const none[] = {NULL};
	static const char *const two[] = {"host", "a", "host", "b", NULL};
	T("GET", "/", 1, none, "400"); /* HTTP/1.1 needs exactly one Host */
	T("GET", "/", 1, two, "400");
	T("GET", "/", 0, none, "path=/(1) query= ws=0");
	static const char *const ws[] = {"host", "h", "upgrade", "WebSocket", NULL};
	T("GET", "/chat/", 1, ws, "path=/chat/(6) query= ws=1");
	static const char *const h2c[] = {"host", "h", "upgrade", "h2c", NULL};
	T("GET", "/", 1, h2c, "path=/(1) query= ws=0");
	/* Host must be host[:port] (RFC 9110 §7.2, RFC 3986 §3.2.2); empty is allowed. */
	static const struct {
		const char *value;
		bool ok;
	} hosts[] = {
		{"example.com", true},	 {"", true},	       {"1.2.3.4:8000", true},
		{"[::1]:80", true},	 {"[::ffff:1.2.3.4]", true}, {"x:", true},
		{"%41b.c", true},	 {"a-b_c~d!$&'()*+,;=", true}, {"x:65535", true},
		{"a b", false},		 {"x:abc", false},	   {"x/y", false},
		{"x:99999", false},	 {"x:123456", false},	   {"user@x", false},
		{"[zz]", false},	 {"[]", false},	   {"[::1", false},
		{":80", false},		 {"x:80:81", false},	   {"%4", false},
		{"x?y", false},		 {"[::1]x", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(hosts); i++) {
		const char *const hv[] = {"host", hosts[i].value, NULL};
		s = target("GET", "/", 1, hv);
		test_checks++;
		if ((strcmp(s, "400") != 0) != hosts[i].ok)
			test_fail(__FILE__, __LINE__, "Host \"%s\": got %s", hosts[i].value, s);
		free(s);
	}
	/* An absolute-form target's authority is checked the same way (and must not be empty). */
	T("GET", "http://user@h/x", 1, NULL, "400");
	T("GET", "http:///x", 1, NULL, "400");
	T("GET", "http://h:99999/x", 1, NULL, "400");
	T("GET", "http://h?q=1", 1, NULL, "path=/(1) query=q=1 ws=0");
	T("GET", "http://[::1]:8/a", 1, NULL, "path=/a(2) query= ws=0");
	static const char *const badhost[] = {"host", "a b", NULL};
	T("GET", "http://h/x", 1, badhost, "path=/x(2) query= ws=0"); /* Host is ignored then */
#undef T
}

/* The message as "key=value ..." in order: text as 'x', bytes as b'x', nil as nil, lists in []. */
static void show(struct buf *out, const struct laurel_value *v)
{
	switch (v->type) {
	case LAUREL_NIL:
		buf_append_str(out, "nil");
		break;
	case LAUREL_INT:
		buf_printf(out, "%lld", (long long)v->u.i);
		break;
	case LAUREL_TEXT:
		buf_printf(out, "'%.*s'", (int)v->u.s.len, v->u.s.ptr);
		break;
	case LAUREL_BYTES:
		buf_printf(out, "b'%.*s'", (int)v->u.s.len, v->u.s.ptr);
		break;
	case LAUREL_LIST:
		buf_append_byte(out, '[');
		for (size_t i = 0; i < v->u.list.len; i++) {
			if (i)
				buf_append_byte(out, ',');
			show(out, &v->u.list.items[i]);
		}
		buf_append_byte(out, ']');
		break;
	default:
		buf_printf(out, "?%d", (int)v->type);
	}
}

static char *message(const char *t, const char *const *headers, const struct asgi_http_peer *peer,
		     const struct asgi_http_options *o)
{
	struct head x;
	make(&x, "GET", t, 1, headers);
	struct asgi_http_target tg;
	CHECK_EQ(asgi_http_target(&x.h, &tg), 0);
	struct laurel_msg *m = asgi_http_message(&x.h, &tg, peer, o, "r!q1");
	struct buf out;
	buf_init(&out);
	const struct laurel_value *root = laurel_msg_croot(m);
	for (size_t i = 0; i < root->u.map.len; i++) {
		buf_printf(&out, "%s%s=", i ? " " : "", root->u.map.items[i].key.ptr);
		show(&out, &root->u.map.items[i].value);
	}
	laurel_msg_free(m);
	asgi_http_target_fini(&tg);
	buf_fini(&x.h.target);
	buf_append_byte(&out, 0);
	return out.data;
}

static void test_messages(void)
{
	const struct asgi_http_peer tcp = {true, "10.0.0.1", 5555, "10.0.0.2", 80};
	const struct asgi_http_peer unix_socket = {false, "", 0, "", 0};
	const struct asgi_http_options plain = {false, NULL};
	const struct asgi_http_options proxied = {true, "/app"};
	static const char *const hs[] = {"host",
					 "h",
					 "x_evil",
					 "1",
					 "x-forwarded-for",
					 "1.2.3.4, 5.6.7.8",
					 "x-forwarded-port",
					 "99",
					 "x-forwarded-proto",
					 "https",
					 NULL};
	/* RFC 9112 §3.2.2: the authority of an absolute-form target replaces Host. */
	static const char *const hx[] = {"x-a", "1", "host", "h", "x-b", "2", NULL};
	char *s = message("http://other.example:81/p", hx, &tcp, &plain);
	CHECK(strstr(s, "headers=[[b'x-a',b'1'],[b'host',b'other.example:81'],[b'x-b',b'2']]") !=
	      NULL);
	free(s);
	s = message("/p?q=1", hs, &tcp, &plain);
	CHECK_STR(s, "reply_channel='r!q1' http_version='1.1' method='GET' path='/p' root_path='' "
		     "scheme='http' query_string=b'q=1' headers=[[b'host',b'h'],"
		     "[b'x-forwarded-for',b'1.2.3.4, 5.6.7.8'],[b'x-forwarded-port',b'99'],"
		     "[b'x-forwarded-proto',b'https']] body=b'' client=['10.0.0.1',5555] "
		     "server=['10.0.0.2',80]");
	free(s);
	s = message("/p", hs, &tcp, &proxied);
	CHECK(strstr(s, "root_path='/app' scheme='https'") != NULL);
	CHECK(strstr(s, "client=['1.2.3.4',99] server=['10.0.0.2',80]") != NULL);
	free(s);
	/* A unix socket: no addresses, unless a trusted proxy names the client. */
	s = message("/", host, &unix_socket, &proxied);
	CHECK(strstr(s, "client=nil server=nil") != NULL);
	free(s);
	s = message("/", hs, &unix_socket, &proxied);
	CHECK(strstr(s, "client=['1.2.3.4',99] server=nil") != NULL);
	free(s);
	static const char *const ws[] = {"host", "h", "upgrade", "websocket", NULL};
	s = message("/chat/?n=1", ws, &tcp, &plain);
	CHECK_STR(s, "path='/chat/' headers=[[b'host',b'h'],[b'upgrade',b'websocket']] "
		     "query_string=b'n=1' client=['10.0.0.1',5555] server=['10.0.0.2',80] "
		     "reply_channel='r!q1' order=0");
	free(s);
}

/* The head for a reply, then " ka=N chunked=N nobody=N dropped=N", or "ERR". */
static char *head(struct laurel_msg *m, bool head_request, int minor, bool more)
{
	struct asgi_http_response r = {.head_request = head_request,
				       .version_minor = minor,
				       .keep_alive = true,
				       .more = more,
				       .date = "D"};
	struct buf out;
	buf_init(&out);
	if (asgi_http_response_head(m, &r, &out) < 0) {
		CHECK_EQ(out.len, 0);
		buf_printf(&out, "ERR %s", r.error ? r.error : "(no reason)");
	} else {
		buf_printf(&out, " ka=%d chunked=%d nobody=%d dropped=%zu", r.keep_alive, r.chunked,
			   r.no_body, r.dropped_headers);
	}
	laurel_msg_free(m);
	buf_append_byte(&out, 0);
	return out.data;
}

static struct laurel_msg *reply(int status, const char *const *headers, const char *content)
{
	struct laurel_msg *m = laurel_msg_new();
	if (status)
		laurel_msg_set_int(m, "status", status);
	if (headers) {
		struct laurel_value *hv = laurel_map_put(m, laurel_msg_root(m), "headers");
		laurel_value_set_list(m, hv, 8);
		for (size_t i = 0; headers[i]; i += 2) {
			struct laurel_value *pair = laurel_list_push(m, hv);
			laurel_value_set_list(m, pair, 2);
			laurel_value_set_bytes(m, laurel_list_push(m, pair), headers[i],
					       strlen(headers[i]));
			laurel_value_set_bytes(m, laurel_list_push(m, pair), headers[i + 1],
					       strlen(headers[i + 1]));
		}
	}
	if (content)
		laurel_msg_set_bytes(m, "content", content, strlen(content));
	return m;
}

static void test_responses(void)
{
	char *s;
#define H(m, hr, minor, more, want)                                                                \
	s = head(m, hr, minor, more);                                                              \
	CHECK_STR(s, want);                                                                        \
	free(s)
	H(reply(200, NULL, "hi"), false, 1, false,
	  "HTTP/1.1 200 OK\r\nDate: D\r\nServer: laurel\r\nContent-Length: 2\r\n\r\n"
	  " ka=1 chunked=0 nobody=0 dropped=0");
	H(reply(200, NULL, "hi"), false, 1, true,
	  "HTTP/1.1 200 OK\r\nDate: D\r\nServer: laurel\r\nTransfer-Encoding: chunked\r\n\r\n"
	  " ka=1 chunked=1 nobody=0 dropped=0");
	H(reply(200, NULL, "hi"), false, 0, true,
	  "HTTP/1.1 200 OK\r\nDate: D\r\nServer: laurel\r\nConnection: close\r\n\r\n"
	  " ka=0 chunked=0 nobody=0 dropped=0");
	H(reply(200, NULL, "hi"), false, 0, false,
	  "HTTP/1.1 200 OK\r\nDate: D\r\nServer: laurel\r\nContent-Length: 2\r\n"
	  "Connection: keep-alive\r\n\r\n ka=1 chunked=0 nobody=0 dropped=0");
	H(reply(200, NULL, "hi"), true, 1, false,
	  "HTTP/1.1 200 OK\r\nDate: D\r\nServer: laurel\r\n\r\n ka=1 chunked=0 nobody=1 dropped=0");
	H(reply(204, NULL, NULL), false, 1, false,
	  "HTTP/1.1 204 No Content\r\nDate: D\r\nServer: laurel\r\n\r\n"
	  " ka=1 chunked=0 nobody=1 dropped=0");
	H(reply(299, NULL, NULL), false, 1, false,
	  "HTTP/1.1 299 Unknown\r\nDate: D\r\nServer: laurel\r\nContent-Length: 0\r\n\r\n"
	  " ka=1 chunked=0 nobody=0 dropped=0");
	static const char *const hs[] = {"X-A",
					 "1",
					 "bad name",
					 "x",
					 "X-B",
					 "a\r\nInjected: 1",
					 "Transfer-Encoding",
					 "gzip",
					 "Date",
					 "Mon",
					 "server",
					 "S",
					 "Content-Length",
					 "5",
					 "Connection",
					 "Close",
					 "",
					 "empty name",
					 NULL};
	H(reply(404, hs, "hello"), false, 1, true,
	  "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nDate: Mon\r\nserver: S\r\nContent-Length: 5\r\n"
	  "Connection: close\r\n\r\n ka=0 chunked=0 nobody=0 dropped=3");
	H(reply(0, NULL, "x"), false, 1, false, "ERR no valid status");
	H(reply(99, NULL, "x"), false, 1, false, "ERR no valid status");
	H(reply(1000, NULL, "x"), false, 1, false, "ERR no valid status");
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "status", "200");
	H(m, false, 1, false, "ERR no valid status");
	/* The application's Content-Length is checked, never passed on as it came. */
	static const char *const cl2[] = {"Content-Length", "2", NULL};
	static const char *const cl3[] = {"Content-Length", "3", NULL};
	static const char *const cl_twice[] = {"Content-Length", "2", "content-length", "2", NULL};
	static const char *const cl_bad[] = {"Content-Length", "2x", NULL};
	static const char *const cl_neg[] = {"Content-Length", "-2", NULL};
	static const char *const cl_empty[] = {"Content-Length", "", NULL};
	static const char *const cl_huge[] = {"Content-Length", "99999999999999999999", NULL};
	H(reply(200, cl2, "hi"), false, 1, false,
	  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: D\r\nServer: laurel\r\n\r\n"
	  " ka=1 chunked=0 nobody=0 dropped=0");
	H(reply(200, cl3, "hi"), false, 1, false,
	  "ERR a Content-Length that does not match its content");
	H(reply(200, cl_twice, "hi"), false, 1, false, "ERR two Content-Length headers");
	H(reply(200, cl_bad, "hi"), false, 1, false, "ERR a malformed Content-Length");
	H(reply(200, cl_neg, "hi"), false, 1, false, "ERR a malformed Content-Length");
	H(reply(200, cl_empty, ""), false, 1, false, "ERR a malformed Content-Length");
	H(reply(200, cl_huge, ""), false, 1, false, "ERR a malformed Content-Length");
	/* Streamed: the rest must match (checked as it comes); HEAD and 304: no body to check. */
	H(reply(200, cl3, "hi"), false, 1, true,
	  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: D\r\nServer: laurel\r\n\r\n"
	  " ka=1 chunked=0 nobody=0 dropped=0");
	H(reply(200, cl3, ""), true, 1, false,
	  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: D\r\nServer: laurel\r\n\r\n"
	  " ka=1 chunked=0 nobody=1 dropped=0");
	H(reply(304, cl3, NULL), false, 1, false,
	  "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\nDate: D\r\nServer: laurel\r\n\r\n"
	  " ka=1 chunked=0 nobody=1 dropped=0");
	struct asgi_http_response r = {.version_minor = 1, .keep_alive = true, .more = true,
				       .date = "D"};
	struct buf out;
	buf_init(&out);
	m = reply(200, cl3, "h");
	CHECK_EQ(asgi_http_response_head(m, &r, &out), 0);
	CHECK_EQ(r.content_length, 3);
	laurel_msg_free(m);
	buf_reset(&out);
	m = reply(200, NULL, "h");
	CHECK_EQ(asgi_http_response_head(m, &r, &out), 0);
	CHECK_EQ(r.content_length, -1);
	laurel_msg_free(m);
	buf_fini(&out);
#undef H
}

int main(void)
{
	test_targets();
	test_messages();
	test_responses();
	return test_done();
}
