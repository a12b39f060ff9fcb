#include "tests/integration/interface/harness.h"
#include "common/util.h"
#include "interface/http1.h"
#include "tests/lib/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int responder_start(struct responder *r, const char *exe, const char *name, int redis_port,
		    bool disconnects)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", redis_port);
	snprintf(r->record, sizeof(r->record), "%s/%s.rec", h_tmp(), name);
	const char *argv[] = {exe,	  "--port",  port,
			      "--record", r->record, disconnects ? "--disconnects" : NULL,
			      NULL};
	proc_start(&r->proc, name, argv);
	if (!file_wait(r->proc.log, "ready", 10000)) {
		fprintf(stderr, "%s did not get ready\n", name);
		proc_dump(&r->proc);
		return -1;
	}
	return 0;
}

static bool can_connect(int port)
{
	struct client c;
	if (client_tcp(&c, "127.0.0.1", port) < 0)
		return false;
	client_close(&c);
	return true;
}

int iface_start(struct iface *f, const char *exe, const char *name, int redis_port, int port,
		const char *const *args)
{
	const char *argv[64];
	size_t n = 0;
	char layer[64], portstr[16];
	snprintf(layer, sizeof(layer), "redis://127.0.0.1:%d", redis_port);
	snprintf(portstr, sizeof(portstr), "%d", port);
	argv[n++] = exe;
	argv[n++] = "--layer";
	argv[n++] = layer;
	argv[n++] = "-v";
	argv[n++] = "2";
	if (port) {
		argv[n++] = "-p";
		argv[n++] = portstr;
	}
	for (size_t i = 0; args && args[i] && n < 62; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	f->port = port;
	proc_start(&f->proc, name, argv);
	const char *marker = "reply channel ";
	if (!file_wait(f->proc.log, marker, 10000)) {
		fprintf(stderr, "%s did not start\n", name);
		proc_dump(&f->proc);
		return -1;
	}
	char *log = slurp(f->proc.log);
	const char *at = strstr(log, marker) + strlen(marker);
	size_t k = strcspn(at, "\n ");
	snprintf(f->prefix, sizeof(f->prefix), "%.*s", (int)k, at);
	free(log);
	/* Connected to Redis once the announcement is there (a send before that gets a 503). */
	struct test_redis r = {.port = redis_port};
	char key[128];
	snprintf(key, sizeof(key), "asgi::interfaces");
	for (size_t i = 0; args && args[i]; i++)
		if (strcmp(args[i], "--prefix") == 0 && args[i + 1])
			snprintf(key, sizeof(key), "%s:interfaces", args[i + 1]);
	int64_t deadline = util_now_ms() + 10000;
	for (;;) {
		const char *score = test_redis_cmd(&r, "ZSCORE %s %s", key, f->prefix);
		bool announced = score[0] && score[0] != '(';
		if (announced && (!port || can_connect(port)))
			return 0;
		if (util_now_ms() > deadline || !proc_alive(&f->proc)) {
			fprintf(stderr, "%s: not ready (announced %d)\n", name, announced);
			proc_dump(&f->proc);
			return -1;
		}
		h_sleep_ms(5);
	}
}

/* --- Clients --------------------------------------------------------------------------------- */

static void client_init(struct client *c, int fd)
{
	c->fd = fd;
	buf_init(&c->in);
	c->eof = c->reset = false;
}

int client_tcp(struct client *c, const char *host, int port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
	struct addrinfo *res;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	c->fd = -1;
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return -1;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	client_init(c, fd);
	return 0;
}

int client_unix(struct client *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	client_init(c, fd);
	return 0;
}

void client_close(struct client *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		buf_fini(&c->in);
	}
	c->fd = -1;
}

int client_send(struct client *c, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

int client_shutdown_write(struct client *c)
{
	return shutdown(c->fd, SHUT_WR);
}

int client_sends(struct client *c, const char *s)
{
	return client_send(c, s, strlen(s));
}

int client_port(struct client *c)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(c->fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

ssize_t client_fill(struct client *c, int timeout_ms)
{
	if (c->eof)
		return 0;
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
	int n;
	do
		n = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	char tmp[65536];
	ssize_t k = recv(c->fd, tmp, sizeof(tmp), 0);
	if (k <= 0) {
		c->eof = true;
		c->reset = k < 0 && errno == ECONNRESET;
		return 0;
	}
	buf_append(&c->in, tmp, (size_t)k);
	return k;
}

bool client_wait_eof(struct client *c, int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	size_t had = c->in.len;
	while (!c->eof) {
		int left = (int)(deadline - util_now_ms());
		if (left < 0 || client_fill(c, left) < 0)
			return false;
	}
	return c->in.len == had;
}

/* Where the head ends (after the empty line) in c->in, or 0. */
static size_t head_end(const struct client *c)
{
	if (c->in.len < 4)
		return 0;
	const char *e = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
	return e ? (size_t)(e - c->in.data) + 4 : 0;
}

static char *header_in(const char *head, const char *name)
{
	size_t n = strlen(name);
	const char *line = strstr(head, "\r\n");
	while (line && line[2] != '\r' && line[2] != '\0') {
		line += 2;
		const char *eol = strstr(line, "\r\n");
		if (!eol)
			break;
		if ((size_t)(eol - line) > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			return xstrndup(v, (size_t)(eol - v));
		}
		line = eol;
	}
	return NULL;
}

char *response_header(const struct response *r, const char *name)
{
	return r->head ? header_in(r->head, name) : NULL;
}

char *response_head_nodate(const struct response *r)
{
	struct buf b;
	buf_init(&b);
	const char *p = r->head;
	while (*p) {
		const char *eol = strstr(p, "\r\n");
		size_t n = eol ? (size_t)(eol - p) + 2 : strlen(p);
		if (strncasecmp(p, "Date:", 5) == 0)
			buf_append_str(&b, "Date: DATE\r\n");
		else
			buf_append(&b, p, n);
		p += n;
	}
	char *s = xstrndup(b.data ? b.data : "", b.len);
	buf_fini(&b);
	return s;
}

/* Tries to de-chunk the body starting at off; returns the end offset, 0 if more input is needed,
 * or (size_t)-1 if the framing is broken. */
static size_t dechunk(const char *p, size_t len, size_t off, struct buf *body)
{
	buf_reset(body);
	for (;;) {
		const char *eol = memmem(p + off, len - off, "\r\n", 2);
		if (!eol)
			return 0;
		char *e;
		unsigned long long n = strtoull(p + off, &e, 16);
		if (e == p + off)
			return (size_t)-1;
		off = (size_t)(eol - p) + 2;
		if (n == 0) {
			/* trailers until the empty line */
			for (;;) {
				const char *t = memmem(p + off, len - off, "\r\n", 2);
				if (!t)
					return 0;
				bool empty = t == p + off;
				off = (size_t)(t - p) + 2;
				if (empty)
					return off;
			}
		}
		if (len - off < n + 2)
			return 0;
		buf_append(body, p + off, n);
		off += n;
		if (memcmp(p + off, "\r\n", 2) != 0)
			return (size_t)-1;
		off += 2;
	}
}

int client_response(struct client *c, struct response *r, bool head_request, int timeout_ms)
{
	memset(r, 0, sizeof(*r));
	int64_t deadline = util_now_ms() + timeout_ms;
	size_t he;
	while (!(he = head_end(c))) {
		int left = (int)(deadline - util_now_ms());
		if (c->eof || left < 0 || client_fill(c, left) <= 0) {
			r->raw = xstrndup(c->in.data ? c->in.data : "", c->in.len);
			r->rawlen = c->in.len;
			return c->eof ? -2 : -1;
		}
	}
	r->head = xstrndup(c->in.data, he);
	if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
		r->status = 0;
	char *te = header_in(r->head, "transfer-encoding");
	char *cl = header_in(r->head, "content-length");
	bool nobody = head_request || (r->status >= 100 && r->status < 200) || r->status == 204 ||
		      r->status == 304;
	struct buf body;
	buf_init(&body);
	size_t end = he;
	int ret = 0;
	for (;;) {
		int left = (int)(deadline - util_now_ms());
		if (nobody) {
			end = he;
			break;
		} else if (te && strcasecmp(te, "chunked") == 0) {
			r->chunked = true;
			size_t e = dechunk(c->in.data, c->in.len, he, &body);
			if (e == (size_t)-1) {
				ret = -2;
				end = c->in.len;
				break;
			}
			if (e) {
				end = e;
				break;
			}
		} else if (cl) {
			size_t n = strtoull(cl, NULL, 10);
			if (c->in.len - he >= n) {
				end = he + n;
				buf_append(&body, c->in.data + he, n);
				break;
			}
		} else {
			r->by_close = true;
			if (c->eof) {
				end = c->in.len;
				buf_append(&body, c->in.data + he, end - he);
				break;
			}
		}
		if (c->eof) {
			ret = -2;
			end = c->in.len;
			break;
		}
		if (left < 0 || client_fill(c, left) < 0) {
			ret = -1;
			end = c->in.len;
			break;
		}
	}
	r->raw = xstrndup(c->in.data, end);
	r->rawlen = end;
	r->body = xstrndup(body.data ? body.data : "", body.len);
	r->bodylen = body.len;
	buf_fini(&body);
	buf_consume(&c->in, end);
	free(te);
	free(cl);
	return ret;
}

void response_free(struct response *r)
{
	free(r->raw);
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int http_once(const char *host, int port, const char *request, struct response *r, int timeout_ms)
{
	struct client c;
	memset(r, 0, sizeof(*r));
	if (client_tcp(&c, host, port) < 0)
		return -2;
	client_sends(&c, request);
	int rc = client_response(&c, r, strncmp(request, "HEAD ", 5) == 0, timeout_ms);
	client_close(&c);
	return rc < 0 ? rc : r->status;
}

/* --- Record file ----------------------------------------------------------------------------- */

static char *find_line(const char *s, const char *needle)
{
	for (const char *line = s; *line;) {
		const char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);
		char *l = xstrndup(line, n);
		if (strstr(l, needle))
			return l;
		free(l);
		line += n + (eol ? 1 : 0);
	}
	return NULL;
}

char *record_find(const char *record, const char *needle, int timeout_ms)
{
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		char *s = slurp(record);
		char *l = find_line(s, needle);
		free(s);
		if (l || util_now_ms() > deadline)
			return l;
		h_sleep_ms(5);
	}
}

int record_count(const char *record, const char *needle)
{
	char *s = slurp(record);
	int n = 0;
	for (const char *line = s; *line;) {
		const char *eol = strchr(line, '\n');
		size_t k = eol ? (size_t)(eol - line) : strlen(line);
		char *l = xstrndup(line, k);
		if (strstr(l, needle))
			n++;
		free(l);
		line += k + (eol ? 1 : 0);
	}
	free(s);
	return n;
}

void record_reply_channel(const char *line, char *out, size_t outlen)
{
	out[0] = '\0';
	const char *key = "\"reply_channel\":\"";
	const char *p = line ? strstr(line, key) : NULL;
	if (!p)
		return;
	p += strlen(key);
	size_t n = strcspn(p, "\"");
	snprintf(out, outlen, "%.*s", (int)n, p);
}

bool record_request_is(const char *line, const char *prefix, const char *rest)
{
	char head[256];
	snprintf(head, sizeof(head), "{\"channel\":\"http.request\",\"reply_channel\":\"%s",
		 prefix);
	if (!line || strncmp(line, head, strlen(head)) != 0) {
		fprintf(stderr, "record line: %s\n  expected to start with %s\n",
			line ? line : "(none)", head);
		return false;
	}
	const char *p = line + strlen(head);
	size_t local =
		strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
	if (local == 0 || p[local] != '"' || strcmp(p + local + 1, rest) != 0) {
		fprintf(stderr, "record line: %s\n  expected after the reply channel: %s\n", line,
			rest);
		return false;
	}
	return true;
}

char *run_capture(const char *const *argv, int *status, int timeout_ms)
{
	int fds[2];
	if (pipe(fds) < 0) {
		*status = -1;
		return xstrdup("");
	}
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	struct buf b;
	buf_init(&b);
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		int left = (int)(deadline - util_now_ms());
		if (left < 0 || poll(&pfd, 1, left) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		char tmp[65536];
		ssize_t k = read(fds[0], tmp, sizeof(tmp));
		if (k <= 0)
			break;
		buf_append(&b, tmp, (size_t)k);
	}
	close(fds[0]);
	int st;
	waitpid(pid, &st, 0);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	char *s = xstrndup(b.data ? b.data : "", b.len);
	buf_fini(&b);
	return s;
}

char *http_outcome(int port, const char *req, size_t len, int timeout_ms, bool half_close)
{
	struct client c;
	struct buf out;
	buf_init(&out);
	if (client_tcp(&c, "127.0.0.1", port) < 0)
		return xstrdup("CONNECT FAILED");
	client_send(&c, req, len);
	if (half_close)
		client_shutdown_write(&c);
	int64_t deadline = util_now_ms() + timeout_ms;
	for (;;) {
		struct response r;
		int left = (int)(deadline - util_now_ms());
		int rc = client_response(&c, &r, false, left < 0 ? 0 : left);
		if (rc == 0) {
			char own[64];
			snprintf(own, sizeof(own), "%s\n", http1_reason(r.status));
			char *ct = response_header(&r, "content-type");
			bool mine = r.status >= 400 && strcmp(r.body, own) == 0 && ct &&
				    strcmp(ct, "text/plain; charset=utf-8") == 0;
			free(ct);
			if (mine)
				buf_printf(&out, "%d,", r.status);
			else
				buf_printf(&out, "%d:%s,", r.status, r.body);
			response_free(&r);
			continue;
		}
		if (rc == -2 && r.rawlen)
			buf_printf(&out, "PARTIAL[%s],", r.raw);
		buf_append_str(&out, rc == -2 ? "EOF" : "TIMEOUT");
		response_free(&r);
		break;
	}
	client_close(&c);
	char *s = xstrdup(out.data);
	buf_fini(&out);
	return s;
}
