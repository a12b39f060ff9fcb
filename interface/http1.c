#include "interface/http1.h"
#include "common/util.h"

#include <ctype.h>
#include <stdio.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http1_parser {
	llhttp_t llh;
	const struct http1_limits *limits;
	const struct http1_callbacks *cb;
	void *owner;
	struct http1_request req;
	size_t capheaders;
	struct buf name, value; /* the header being read */
	size_t header_bytes;
	uint64_t body_bytes;
	int status; /* set by a limit or a callback */
	bool in_head;
	bool busy;
	bool done;
	bool upgraded; /* llhttp stopped with HPE_PAUSED_UPGRADE */
	bool method_probe; /* reading the rest of a method llhttp does not know */
	size_t method_len;
	char error[96];
};

static int fail(struct http1_parser *p, int status, const char *why)
{
	p->status = status;
	snprintf(p->error, sizeof(p->error), "%s", why);
	return HPE_USER;
}

static void clear_request(struct http1_parser *p)
{
	for (size_t i = 0; i < p->req.nheaders; i++) {
		free(p->req.headers[i].name);
		free(p->req.headers[i].value);
	}
	p->req.nheaders = 0;
	buf_reset(&p->req.target);
	buf_reset(&p->name);
	buf_reset(&p->value);
	p->req.method[0] = '\0';
	p->req.content_length = -1;
	p->req.chunked = p->req.keep_alive = p->req.expect_continue = false;
	p->req.upgrade = p->req.head = false;
	p->header_bytes = 0;
	p->body_bytes = 0;
	p->in_head = false;
}

static struct http1_parser *of(llhttp_t *llh)
{
	return llh->data;
}

static int on_message_begin(llhttp_t *llh)
{
	struct http1_parser *p = of(llh);
	clear_request(p);
	p->busy = true;
	p->in_head = true;
	return 0;
}

static int on_url(llhttp_t *llh, const char *at, size_t len)
{
	struct http1_parser *p = of(llh);
	if (p->req.target.len + len > p->limits->max_uri)
		return fail(p, 414, "request target too long");
	buf_append(&p->req.target, at, len);
	return 0;
}

static int count_header_bytes(struct http1_parser *p, size_t len)
{
	p->header_bytes += len;
	if (p->header_bytes > p->limits->max_header_bytes)
		return fail(p, 431, "headers too large");
	return 0;
}

static int on_header_field(llhttp_t *llh, const char *at, size_t len)
{
	struct http1_parser *p = of(llh);
	if (count_header_bytes(p, len))
		return HPE_USER;
	buf_append(&p->name, at, len);
	return 0;
}

static int on_header_value(llhttp_t *llh, const char *at, size_t len)
{
	struct http1_parser *p = of(llh);
	if (count_header_bytes(p, len))
		return HPE_USER;
	buf_append(&p->value, at, len);
	return 0;
}

static int on_header_value_complete(llhttp_t *llh)
{
	struct http1_parser *p = of(llh);
	if (p->req.nheaders >= p->limits->max_headers)
		return fail(p, 431, "too many headers");
	if (p->req.nheaders == p->capheaders) {
		p->capheaders = p->capheaders ? p->capheaders * 2 : 16;
		p->req.headers = xrealloc(p->req.headers, p->capheaders * sizeof(*p->req.headers));
	}
	/* RFC 9112 §5.1: a field name is a token, with nothing between it and the colon. */
	if (p->name.len == 0)
		return fail(p, 400, "empty header name");
	for (size_t i = 0; i < p->name.len; i++) {
		unsigned char ch = (unsigned char)p->name.data[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
			return fail(p, 400, "bad header name");
	}
	struct http1_header *h = &p->req.headers[p->req.nheaders++];
	for (size_t i = 0; i < p->name.len; i++)
		p->name.data[i] = (char)tolower((unsigned char)p->name.data[i]);
	size_t start = 0, end = p->value.len;
	while (start < end && (p->value.data[start] == ' ' || p->value.data[start] == '\t'))
		start++;
	while (end > start && (p->value.data[end - 1] == ' ' || p->value.data[end - 1] == '\t'))
		end--;
	h->name = xstrndup(p->name.len ? p->name.data : "", p->name.len);
	h->namelen = p->name.len;
	h->value = xstrndup(p->value.len ? p->value.data + start : "", end - start);
	h->valuelen = end - start;
	buf_reset(&p->name);
	buf_reset(&p->value);
	return 0;
}

static const struct http1_header *find(const struct http1_request *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (strcmp(r->headers[i].name, name) == 0)
			return &r->headers[i];
	return NULL;
}

/* Checks Transfer-Encoding: chunked must be there, last, and the only coding we decode. */
static int check_transfer_encoding(struct http1_parser *p)
{
	bool any = false, last_chunked = false, other = false;
	for (size_t i = 0; i < p->req.nheaders; i++) {
		const struct http1_header *h = &p->req.headers[i];
		if (strcmp(h->name, "transfer-encoding") != 0)
			continue;
		any = true;
		const char *s = h->value;
		while (*s) {
			while (*s == ' ' || *s == '\t' || *s == ',')
				s++;
			size_t n = strcspn(s, ",");
			size_t k = n;
			while (k && (s[k - 1] == ' ' || s[k - 1] == '\t'))
				k--;
			if (k == 0) {
				s += n;
				continue;
			}
			last_chunked = k == 7 && strncasecmp(s, "chunked", 7) == 0;
			if (!last_chunked)
				other = true;
			s += n;
		}
	}
	if (!any)
		return 0;
	if (!last_chunked)
		return fail(p, 400, "Transfer-Encoding does not end in chunked");
	if (other)
		return fail(p, 501, "unsupported transfer coding");
	return 0;
}

static int on_headers_complete(llhttp_t *llh)
{
	struct http1_parser *p = of(llh);
	struct http1_request *r = &p->req;
	p->in_head = false;
	snprintf(r->method, sizeof(r->method), "%s",
		 llhttp_method_name((llhttp_method_t)llhttp_get_method(llh)));
	r->version_major = llhttp_get_http_major(llh);
	r->version_minor = llhttp_get_http_minor(llh);
	r->keep_alive = llhttp_should_keep_alive(llh);
	r->chunked = (llh->flags & F_CHUNKED) != 0;
	r->content_length = (llh->flags & F_CONTENT_LENGTH) ? (int64_t)llh->content_length : -1;
	r->upgrade = llh->upgrade != 0;
	r->head = strcmp(r->method, "HEAD") == 0;
	const struct http1_header *e = find(r, "expect");
	r->expect_continue = e && strcasecmp(e->value, "100-continue") == 0 &&
			     (r->version_major > 1 || r->version_minor >= 1);
	if (r->version_major == 0)
		return fail(p, 400, "request line without an HTTP version");
	if (r->version_major != 1)
		return fail(p, 505, "unsupported HTTP version");
	/* RFC 9112 §6.1: HTTP/1.0 has no transfer codings; its framing would be faulty. */
	if (r->version_minor == 0 && find(r, "transfer-encoding"))
		return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
	if (check_transfer_encoding(p))
		return HPE_USER;
	if (r->content_length > 0 && (uint64_t)r->content_length > p->limits->max_body)
		return fail(p, 413, "body too large");
	/* A tunnel is not ours to open (RFC 9110 §9.3.6): not implemented, like a method we do
	 * not know. */
	if (strcmp(r->method, "CONNECT") == 0)
		return fail(p, 501, "CONNECT is not supported");

	if (p->cb->on_head) {
		int status = p->cb->on_head(p->owner, r);
		if (status)
			return fail(p, status, "refused");
	}
	return 0;
}

static int on_body(llhttp_t *llh, const char *at, size_t len)
{
	struct http1_parser *p = of(llh);
	p->body_bytes += len;
	if (p->body_bytes > p->limits->max_body)
		return fail(p, 413, "body too large");
	if (p->cb->on_body) {
		int status = p->cb->on_body(p->owner, at, len);
		if (status)
			return fail(p, status, "refused");
	}
	return 0;
}

/* A chunk announcing more than the body may still hold is refused before it is read. */
static int on_chunk_header(llhttp_t *llh)
{
	struct http1_parser *p = of(llh);
	if (llh->content_length > p->limits->max_body ||
	    p->body_bytes + llh->content_length > p->limits->max_body)
		return fail(p, 413, "body too large");
	return 0;
}

static int on_message_complete(llhttp_t *llh)
{
	struct http1_parser *p = of(llh);
	p->done = true;
	if (p->cb->on_complete) {
		int status = p->cb->on_complete(p->owner);
		if (status)
			return fail(p, status, "refused");
	}
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_chunk_header = on_chunk_header,
	.on_message_complete = on_message_complete,
};

struct http1_parser *http1_new(const struct http1_limits *limits, const struct http1_callbacks *cb,
			       void *owner)
{
	struct http1_parser *p = xcalloc(1, sizeof(*p));
	p->limits = limits;
	p->cb = cb;
	p->owner = owner;
	buf_init(&p->req.target);
	buf_init(&p->name);
	buf_init(&p->value);
	llhttp_init(&p->llh, HTTP_REQUEST, &settings);
	p->llh.data = p;
	clear_request(p);
	return p;
}

void http1_free(struct http1_parser *p)
{
	if (!p)
		return;
	clear_request(p);
	free(p->req.headers);
	buf_fini(&p->req.target);
	buf_fini(&p->name);
	buf_fini(&p->value);
	free(p);
}

static bool tchar(unsigned char ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* llhttp stopped in a method it does not know. RFC 9110 §9.1: a well-formed method we do not
 * implement is 501, not a malformed request; so the rest of the method is read (over as many
 * feeds as it takes: the answer must not depend on how the bytes were split) until the space that
 * ends it (501) or a byte that cannot be in a method (400). Returns the status, or 0 when data
 * ended first. What llhttp took before it stopped was a known method's prefix: all token bytes. */
static int probe_method(struct http1_parser *p, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (data[i] == ' ')
			return p->method_len ? 501 : 400;
		if (!tchar((unsigned char)data[i]) || ++p->method_len > sizeof(p->req.method))
			return 400;
	}
	return 0;
}

static ssize_t method_refused(struct http1_parser *p, int status, int *out)
{
	p->method_probe = false;
	p->status = status;
	snprintf(p->error, sizeof(p->error), "%s",
		 status == 501 ? "unknown method" : "HPE_INVALID_METHOD: invalid method");
	*out = status;
	return -1;
}

ssize_t http1_feed(struct http1_parser *p, const char *data, size_t len, int *status)
{
	if (p->done)
		return 0;
	if (p->status) {
		*status = p->status;
		return -1;
	}
	if (p->method_probe) {
		int st = probe_method(p, data, len);
		return st ? method_refused(p, st, status) : (ssize_t)len;
	}
	llhttp_errno_t err = llhttp_execute(&p->llh, data, len);
	/* After a request with an Upgrade the owner did not take (it answered it as plain HTTP),
	 * llhttp stops at the next bytes: go on parsing them as the next request. */
	while (err == HPE_PAUSED_UPGRADE && !p->done) {
		const char *pos = llhttp_get_error_pos(&p->llh);
		size_t off = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : 0;
		llhttp_resume_after_upgrade(&p->llh);
		err = llhttp_execute(&p->llh, data + off, len - off);
	}
	if (err == HPE_OK)
		return (ssize_t)len;
	if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
		p->upgraded = err == HPE_PAUSED_UPGRADE;
		const char *pos = llhttp_get_error_pos(&p->llh);
		return pos && pos >= data && pos <= data + len ? pos - data : 0;
	}
	if (!p->status) {
		snprintf(p->error, sizeof(p->error), "%s: %s", llhttp_errno_name(err),
			 llhttp_get_error_reason(&p->llh) ? llhttp_get_error_reason(&p->llh) : "");
		p->status = 400;
		const char *pos = llhttp_get_error_pos(&p->llh);
		if (err == HPE_INVALID_METHOD && pos >= data && pos <= data + len) {
			p->status = 0;
			p->method_probe = true;
			p->method_len = 0;
			int st = probe_method(p, pos, len - (size_t)(pos - data));
			return st ? method_refused(p, st, status) : (ssize_t)len;
		}
	}
	*status = p->status;
	return -1;
}

bool http1_done(const struct http1_parser *p)
{
	return p->done;
}

void http1_next(struct http1_parser *p)
{
	if (p->upgraded)
		llhttp_resume_after_upgrade(&p->llh);
	else if (p->done)
		llhttp_resume(&p->llh);
	p->upgraded = false;
	p->done = false;
	p->busy = false;
	clear_request(p);
}

struct http1_request *http1_request(struct http1_parser *p)
{
	return p->busy && !p->in_head ? &p->req : NULL;
}

bool http1_busy(const struct http1_parser *p)
{
	return p->busy;
}

const char *http1_error(const struct http1_parser *p)
{
	return p->error;
}

const char *http1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "";
	}
}
