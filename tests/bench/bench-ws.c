/* A WebSocket load client for the benchmarks: one thread, epoll, nonblocking sockets, no library.
 * Prints numbers and one "RESULT key=value ..." line for tests/bench/run; asserts nothing.
 *
 *   bench-ws echo   --port P --conns N --msgs M [--path /echo/] [--size BYTES]
 *       N connections, each sends a text frame and waits for its echo, M times (closed loop):
 *       messages/s and the round-trip latency p50/p99.
 *   bench-ws fanout --port P[,P2...] --members K --room R [--broadcasts B] [--gap-ms MS]
 *                   [--size BYTES]
 *       K connections to /chat/R/?nick=nI spread over the ports; B times, connection 0 sends
 *       "xS" (padded with English text to BYTES when given) and the time until the last member
 *       has "nI: xS" is taken; deliveries missing after 5 s are lost. The bytes received per
 *       delivery (frames as on the wire) are printed.
 *       With --publish-url /pub/R (and --sub-path /sub/R, the members' path instead of the
 *       chat's), the broadcasts are HTTP POSTs of "p: xS" on one keep-alive connection to the
 *       first port instead of a member's message (nchan): the same time, from the POST going
 *       out until the last member has it.
 *   bench-ws idle   --port P --conns N [--src 127.0.0.1,127.0.0.2,...] [--path /chat/idle/]
 *                   [--pid PID[,PID...]] [--redis-port P]
 *       Opens N WebSockets from the source addresses (bound before connect) in child processes
 *       of at most 16,000 each, holds them, and prints the (summed) RSS of the PIDs and Redis's
 *       used_memory
 *       before and after, per connection.
 *   bench-ws hold   --port P[,P2...] --conns N --room R [--src ...] [--per-proc M]
 *                   [--broadcasts B] [--gap-ms MS] [--pid PID[,PID...]] [--redis-port P]
 *                   [--publish-url /pub/R --sub-path /sub/R]
 *       N members of one room (/chat/R/?nick=nI, or --sub-path) held by child processes of at
 *       most M (default 16,000) connections each, since one process may open only so many
 *       files. Once all are open: the summed RSS of the PIDs and Redis's used_memory before and
 *       after, per connection held. Then B broadcasts, MS apart: the parent holds one more member
 *       (nick "nN") and sends "xS" from it (or POSTs "p: xS" to --publish-url), and every child
 *       stamps each delivery with CLOCK_MONOTONIC (one clock for all processes of the host) in
 *       memory shared with the parent; a broadcast's time is its last delivery over all
 *       children minus the send, over those that reached every member held; deliveries missing
 *       after 5 s are lost.
 *
 * --deflate F: a fraction F (0..1) of the connections offer permessage-deflate as browsers do
 * ("permessage-deflate; client_max_window_bits"); where the server agrees, compressed messages
 * are inflated (zlib) before they are looked at, and counted.
 * --inflight N bounds the handshakes in progress (default 64, under the layer's capacity of 100
 * for websocket.connect). BENCH_WS_DEBUG=1 prints every fan-out message received.
 * Every mode reports its own CPU time (getrusage), so a saturated client can be seen. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RBUF 8192
#define MAX_PORTS 8
#define MAX_SRC 32
#define PER_CHILD 16000

enum state { CONNECTING, HANDSHAKE, OPEN, DEAD };

struct conn {
	int fd;
	enum state st;
	int idx;
	size_t rlen;
	int64_t sent_at; /* ns; echo: when the outstanding message went out */
	int done;        /* echo: messages answered */
	int last_seq;    /* fanout: the last broadcast seen */
	bool offer;      /* offers permessage-deflate (--deflate) */
	bool deflate;    /* the server agreed */
	bool pub;        /* an HTTP connection that publishes (--publish-url), not a member */
	char *rbuf;
};

static struct {
	const char *mode, *path, *room;
	const char *sub_path, *publish_url; /* nchan: members subscribe here; broadcasts POST there */
	int ports[MAX_PORTS], nports;
	struct in_addr src[MAX_SRC];
	int nsrc;
	int conns, msgs, size, broadcasts, gap_ms, inflight, redis_port, per_proc;
	int pids[16], npids;
	double deflate;
	bool sized; /* --size given (fanout pads its message) */
} opt = {.path = NULL, .room = "bench", .conns = 1, .msgs = 1000, .size = 32, .broadcasts = 30,
	 .gap_ms = 200, .inflight = 64, .per_proc = PER_CHILD};

static int ep;
static struct conn *conns;
static int nconn, nopen, nfailed, ninflight, nextconn;
static char payload[65536];
/* Data frames received (as on the wire), and those that came compressed. */
static uint64_t wire_bytes, data_frames, compressed_frames, inflate_errors;
static int deflate_members;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double cpu_seconds(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_ms(int64_t *v, size_t n, double p)
{
	if (!n)
		return -1;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-ws: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void kill_conn(struct conn *c)
{
	if (c->st == DEAD)
		return;
	if (c->st != OPEN)
		ninflight--;
	else if (!c->pub)
		nopen--;
	nfailed++;
	c->st = DEAD;
	close(c->fd);
}

static bool write_all(struct conn *c, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(c->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kill_conn(c);
			return false;
		}
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* A masked client frame. */
static bool send_frame(struct conn *c, int opcode, const char *data, size_t len)
{
	unsigned char h[14 + 1024];
	size_t hl = 0;
	static const unsigned char key[4] = {0x3a, 0x91, 0x5c, 0x07};
	h[hl++] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		h[hl++] = (unsigned char)(0x80 | len);
	} else {
		h[hl++] = 0x80 | 126;
		h[hl++] = (unsigned char)(len >> 8);
		h[hl++] = (unsigned char)len;
	}
	memcpy(h + hl, key, 4);
	hl += 4;
	if (len <= 1024) {
		for (size_t i = 0; i < len; i++)
			h[hl + i] = (unsigned char)data[i] ^ key[i & 3];
		return write_all(c, h, hl + len);
	}
	char *m = malloc(hl + len);
	memcpy(m, h, hl);
	for (size_t i = 0; i < len; i++)
		m[hl + i] = (char)((unsigned char)data[i] ^ key[i & 3]);
	bool ok = write_all(c, m, hl + len);
	free(m);
	return ok;
}

static struct sockaddr_in dst_for(int i)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)opt.ports[i % opt.nports]);
	return a;
}

static void start_connect(struct conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (opt.nsrc) {
		/* The port is chosen at connect(), per destination, so each source address gives a
		 * whole ephemeral range. */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr = opt.src[c->idx % opt.nsrc]};
		if (bind(fd, (struct sockaddr *)&s, sizeof(s)) < 0)
			die("bind");
	}
	struct sockaddr_in a = dst_for(c->idx);
	c->fd = fd;
	c->st = CONNECTING;
	c->rlen = 0;
	ninflight++;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		kill_conn(c);
		return;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
}

static void fill_inflight(void)
{
	while (ninflight < opt.inflight && nextconn < nconn)
		start_connect(&conns[nextconn++]);
}

static void send_handshake(struct conn *c)
{
	int err = 0;
	socklen_t l = sizeof(err);
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
	if (err) {
		kill_conn(c);
		return;
	}
	if (c->pub) { /* plain HTTP: open once connected */
		c->st = OPEN;
		ninflight--;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		return;
	}
	char req[512], path[256];
	if (opt.sub_path)
		snprintf(path, sizeof(path), "%s", opt.sub_path);
	else if (opt.room)
		snprintf(path, sizeof(path), "/chat/%s/?nick=n%d", opt.room, c->idx);
	else
		snprintf(path, sizeof(path), "%s", opt.path);
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n%s\r\n",
			 path,
			 c->offer ? "Sec-WebSocket-Extensions: permessage-deflate; "
				    "client_max_window_bits\r\n"
				  : "");
	if (!write_all(c, req, (size_t)n))
		return;
	c->st = HANDSHAKE;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* What a mode does with a whole text or binary message. */
static void (*on_message)(struct conn *c, const char *data, size_t len);
static void (*on_open)(struct conn *c);

/* Inflates one compressed message (RFC 7692: the 00 00 FF FF tail added). Returns its length
 * in out (static), or -1. */
static long inflate_message(const unsigned char *data, size_t len, const char **out)
{
	static z_stream z;
	static bool ready;
	static unsigned char buf[1 << 20];
	static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
	if (!ready) {
		if (inflateInit2(&z, -15) != Z_OK)
			return -1;
		ready = true;
	} else {
		inflateReset(&z);
	}
	z.next_out = buf;
	z.avail_out = sizeof(buf);
	z.next_in = (unsigned char *)data;
	z.avail_in = (uInt)len;
	int rc = inflate(&z, Z_SYNC_FLUSH);
	if (rc == Z_OK || rc == Z_BUF_ERROR) {
		z.next_in = (unsigned char *)tail;
		z.avail_in = 4;
		rc = inflate(&z, Z_SYNC_FLUSH);
	}
	if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
		return -1;
	*out = (const char *)buf;
	return (long)(sizeof(buf) - z.avail_out);
}

/* Parses whole frames out of rbuf; returns false when the connection died. */
static bool parse_frames(struct conn *c)
{
	size_t off = 0;
	while (c->rlen - off >= 2) {
		unsigned char *p = (unsigned char *)c->rbuf + off;
		int opcode = p[0] & 0x0f;
		uint64_t len = p[1] & 0x7f;
		size_t hl = 2;
		if (len == 126) {
			if (c->rlen - off < 4)
				break;
			len = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (len == 127) {
			if (c->rlen - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			hl = 10;
		}
		if (len > RBUF - 16) {
			kill_conn(c);
			return false;
		}
		if (c->rlen - off < hl + len)
			break;
		const char *data = (const char *)p + hl;
		if (opcode == 1 || opcode == 2) {
			wire_bytes += hl + len;
			data_frames++;
			long n = (long)len;
			if (p[0] & 0x40) {
				compressed_frames++;
				n = c->deflate ? inflate_message(p + hl, (size_t)len, &data) : -1;
				if (n < 0) {
					inflate_errors++;
					kill_conn(c);
					return false;
				}
			}
			on_message(c, data, (size_t)n);
		}
		else if (opcode == 9)
			send_frame(c, 10, data, (size_t)len);
		else if (opcode == 8) {
			kill_conn(c);
			return false;
		}
		if (c->st == DEAD)
			return false;
		off += hl + (size_t)len;
	}
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return true;
}

/* The publisher's connection: the answers are read and dropped; one that is not 2xx is told. */
static void pub_readable(struct conn *c)
{
	for (;;) {
		ssize_t n = read(c->fd, c->rbuf, RBUF - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			fprintf(stderr, "bench-ws: the publisher's connection closed\n");
			kill_conn(c);
			return;
		}
		c->rbuf[n] = 0;
		for (char *p = c->rbuf; (p = memmem(p, (size_t)(c->rbuf + n - p), "HTTP/1.1 ", 9));
		     p += 9)
			if (c->rbuf + n - p >= 10 && p[9] != '2')
				fprintf(stderr, "bench-ws: publish answered %.3s\n", p + 9);
	}
}

/* POSTs one message on the publisher's connection. */
static bool publish(struct conn *c, const char *body, size_t len)
{
	char req[8192];
	int h = snprintf(req, sizeof(req),
			 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
			 "Content-Length: %zu\r\n\r\n",
			 opt.publish_url, len);
	if (h < 0 || (size_t)h + len > sizeof(req))
		return false;
	memcpy(req + h, body, len);
	return write_all(c, req, (size_t)h + len);
}

/* The publisher's connection to the first port. */
static struct conn pubc = {.fd = -1, .st = DEAD, .pub = true};

static bool pub_ready(void)
{
	return pubc.st != CONNECTING;
}

static void run_loop(int timeout_ms, bool (*stop)(void));

/* Opens pubc; false when it did not open. */
static bool open_publisher(void)
{
	pubc.rbuf = malloc(RBUF);
	pubc.idx = 0;
	start_connect(&pubc);
	run_loop(5000, pub_ready);
	if (pubc.st != OPEN)
		fprintf(stderr, "bench-ws: cannot connect the publisher to port %d\n", opt.ports[0]);
	return pubc.st == OPEN;
}

static void on_readable(struct conn *c)
{
	if (c->pub) {
		pub_readable(c);
		return;
	}
	for (;;) {
		ssize_t n = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			kill_conn(c);
			return;
		}
		c->rlen += (size_t)n;
		if (c->st == HANDSHAKE) {
			char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
			if (!end) {
				if (c->rlen == RBUF)
					kill_conn(c);
				if (c->st == DEAD)
					return;
				continue;
			}
			if (c->rlen < 12 || memcmp(c->rbuf + 9, "101", 3) != 0) {
				kill_conn(c);
				return;
			}
			size_t hl = (size_t)(end + 4 - c->rbuf);
			c->deflate = c->offer && memmem(c->rbuf, hl, "permessage-deflate", 18);
			deflate_members += c->deflate;
			memmove(c->rbuf, c->rbuf + hl, c->rlen - hl);
			c->rlen -= hl;
			c->st = OPEN;
			ninflight--;
			nopen++;
			if (on_open)
				on_open(c);
			fill_inflight();
			if (c->st == DEAD)
				return;
		}
		if (!parse_frames(c))
			return;
		if ((size_t)n < RBUF / 2)
			return;
	}
}

/* Runs the loop for at most timeout_ms, or until stop() says so. */
static void run_loop(int timeout_ms, bool (*stop)(void))
{
	struct epoll_event evs[512];
	int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
	while (!stop()) {
		int64_t left = (end - now_ns()) / 1000000;
		if (left <= 0)
			return;
		int n = epoll_wait(ep, evs, 512, left > 100 ? 100 : (int)left + 1);
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->st == DEAD)
				continue;
			if (c->st == CONNECTING) {
				send_handshake(c);
				if (c->st == DEAD)
					fill_inflight();
				continue;
			}
			on_readable(c);
			if (c->st == DEAD)
				fill_inflight();
		}
	}
}

static bool all_settled(void)
{
	return nextconn == nconn && ninflight == 0;
}

static void setup(int n)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	nconn = n;
	conns = calloc((size_t)n, sizeof(*conns));
	for (int i = 0; i < n; i++) {
		conns[i].idx = i;
		conns[i].rbuf = malloc(RBUF);
		conns[i].last_seq = -1;
		conns[i].offer = opt.deflate > 0 &&
				 (int)((i + 1) * opt.deflate) > (int)(i * opt.deflate);
	}
}

/* Opens every connection, giving up on those that did not open when nothing moved for
 * stall_ms. Returns the seconds it took. */
static double open_all(int stall_ms)
{
	int64_t t0 = now_ns();
	int last = -1;
	int64_t last_move = now_ns();
	fill_inflight();
	while (!all_settled()) {
		run_loop(100, all_settled);
		if (nopen + nfailed != last) {
			last = nopen + nfailed;
			last_move = now_ns();
		} else if (now_ns() - last_move > (int64_t)stall_ms * 1000000) {
			break;
		}
	}
	return (double)(now_ns() - t0) / 1e9;
}

/* ---- echo ---- */

static int64_t *lat;
static size_t nlat;
static int echo_live;

static void echo_send(struct conn *c)
{
	c->sent_at = now_ns();
	send_frame(c, 1, payload, (size_t)opt.size);
}

static void echo_message(struct conn *c, const char *data, size_t len)
{
	if (c->done >= opt.msgs)
		return;
	lat[nlat++] = now_ns() - c->sent_at;
	if (++c->done < opt.msgs)
		echo_send(c);
	else
		echo_live--;
}

static bool echo_finished(void)
{
	return echo_live <= 0;
}

static int run_echo(void)
{
	if (!opt.path)
		opt.path = "/echo/";
	opt.room = NULL;
	setup(opt.conns);
	on_message = echo_message;
	double open_s = open_all(10000);
	if (nopen < nconn)
		fprintf(stderr, "bench-ws: only %d of %d connections opened\n", nopen, nconn);
	lat = malloc(sizeof(*lat) * (size_t)nconn * (size_t)opt.msgs + 1);
	for (int i = 0; i < opt.size; i++)
		payload[i] = (char)('a' + i % 26);
	double cpu0 = cpu_seconds(RUSAGE_SELF);
	int64_t t0 = now_ns();
	echo_live = 0;
	for (int i = 0; i < nconn; i++)
		if (conns[i].st == OPEN) {
			echo_live++;
			echo_send(&conns[i]);
		}
	run_loop(60000, echo_finished);
	double secs = (double)(now_ns() - t0) / 1e9;
	double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
	qsort(lat, nlat, sizeof(*lat), cmp_i64);
	long lost = (long)nconn * opt.msgs - (long)nlat;
	printf("echo: %d connections x %d messages of %d bytes: %zu answered in %.3f s\n", nopen,
	       opt.msgs, opt.size, nlat, secs);
	printf("RESULT msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f unanswered=%ld opened=%d "
	       "open_s=%.3f client_cpu_pct=%.0f\n",
	       (double)nlat / secs, pct_ms(lat, nlat, 0.50), pct_ms(lat, nlat, 0.99), lost, nopen,
	       open_s, 100.0 * cpu / secs);
	return 0;
}

/* ---- fanout ---- */

static int cur_seq = -1, got_cur;

/* The S of a broadcast "nI: xS...", or -1. */
static int broadcast_seq(const char *data, size_t len)
{
	const char *x = memmem(data, len, ": x", 3);
	if (!x)
		return -1;
	int seq = 0;
	for (const char *d = x + 3; d < data + len && *d >= '0' && *d <= '9'; d++)
		seq = seq * 10 + (*d - '0');
	return seq;
}

static void fanout_message(struct conn *c, const char *data, size_t len)
{
	if (getenv("BENCH_WS_DEBUG"))
		fprintf(stderr, "conn %d: %.*s\n", c->idx, (int)len, data);
	int seq = broadcast_seq(data, len);
	if (seq >= 0 && seq == cur_seq && c->last_seq != seq) {
		c->last_seq = seq;
		got_cur++;
	}
}

static bool fanout_done(void)
{
	return got_cur >= nopen;
}

static bool never(void)
{
	return false;
}

static int run_fanout(void)
{
	opt.path = NULL;
	setup(opt.conns);
	on_message = fanout_message;
	double open_s = open_all(10000);
	if (nopen < nconn)
		fprintf(stderr, "bench-ws: only %d of %d members connected\n", nopen, nconn);
	struct conn *sender = NULL;
	if (opt.publish_url) {
		if (nopen && open_publisher())
			sender = &pubc;
	} else {
		for (int i = 0; i < nconn && !sender; i++)
			if (conns[i].st == OPEN)
				sender = &conns[i];
	}
	if (!sender) {
		printf("RESULT members=%d opened=%d\n", nopen, nopen);
		return 1;
	}
	run_loop(300, never); /* let the last joins settle */
	int64_t *t = calloc((size_t)opt.broadcasts, sizeof(*t));
	size_t nt = 0;
	long lost = 0;
	double cpu0 = cpu_seconds(RUSAGE_SELF);
	int64_t busy = 0;
	wire_bytes = data_frames = compressed_frames = 0;
	static const char prose[] =
		" and when the train came out of the tunnel the room had moved on: Bob had posted "
		"the minutes, Carol asked who would bring the projector on Thursday, and somebody "
		"shared the new schedule.";
	for (int b = 0; b < opt.broadcasts; b++) {
		char msg[4096];
		int n = snprintf(msg, sizeof(msg), "%sx%d", sender->pub ? "p: " : "", b);
		while (opt.sized && n < opt.size && n < (int)sizeof(msg) - 1) {
			msg[n] = prose[(size_t)n % (sizeof(prose) - 1)];
			n++;
		}
		cur_seq = b;
		got_cur = 0;
		int members = nopen;
		int64_t t0 = now_ns();
		if (!(sender->pub ? publish(sender, msg, (size_t)n)
				  : send_frame(sender, 1, msg, (size_t)n)))
			break;
		run_loop(5000, fanout_done);
		int64_t dt = now_ns() - t0;
		busy += dt;
		if (got_cur >= members)
			t[nt++] = dt;
		else
			lost += members - got_cur;
		run_loop(opt.gap_ms, never);
	}
	double cpu = cpu_seconds(RUSAGE_SELF) - cpu0;
	qsort(t, nt, sizeof(*t), cmp_i64);
	printf("fanout: %d members on %d interface(s), %d broadcasts: %zu complete, %ld lost "
	       "deliveries\n",
	       nopen, opt.nports, opt.broadcasts, nt, lost);
	printf("RESULT members=%d p50_ms=%.2f p95_ms=%.2f lost=%ld complete=%zu open_s=%.3f "
	       "connect_per_s=%.0f client_cpu_pct=%.0f deflate_members=%d "
	       "wire_bytes_per_delivery=%.1f compressed_deliveries=%llu inflate_errors=%llu\n",
	       nopen, pct_ms(t, nt, 0.50), pct_ms(t, nt, 0.95), lost, nt, open_s,
	       (double)nopen / open_s, busy ? 100.0 * cpu / ((double)busy / 1e9) : 0.0,
	       deflate_members, data_frames ? (double)wire_bytes / (double)data_frames : 0.0,
	       (unsigned long long)compressed_frames, (unsigned long long)inflate_errors);
	fflush(stdout); /* a sanitizer's exit does not flush it */
	free(t);
	return 0;
}

/* ---- idle ---- */

static long rss_kib(int pid);

/* The summed RSS of the --pid processes, or -1. */
static long rss_total(void)
{
	long sum = 0;
	for (int i = 0; i < opt.npids; i++) {
		long v = rss_kib(opt.pids[i]);
		if (v < 0)
			return -1;
		sum += v;
	}
	return opt.npids ? sum : -1;
}

static long rss_kib(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* used_memory from INFO memory, over a plain socket. */
static long redis_used_memory(int port)
{
	if (!port)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	const char cmd[] = "INFO memory\r\n";
	if (write(fd, cmd, sizeof(cmd) - 1) < 0) {
		close(fd);
		return -1;
	}
	static char buf[16384];
	size_t len = 0;
	long v = -1;
	while (len < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
		char *p = strstr(buf, "used_memory:");
		if (p && strchr(p, '\n')) {
			v = atol(p + 12);
			break;
		}
	}
	close(fd);
	return v;
}

static int run_idle(void)
{
	/* Without --path: a chat member, with a group membership and a channel session. */
	if (!opt.path)
		opt.room = "idle";
	else
		opt.room = NULL;
	int nchild = (opt.conns + PER_CHILD - 1) / PER_CHILD;
	long rss0 = rss_total();
	long red0 = redis_used_memory(opt.redis_port);
	int res[2], ctl[2];
	if (pipe(res) < 0 || pipe(ctl) < 0)
		die("pipe");
	int64_t t0 = now_ns();
	for (int k = 0; k < nchild; k++) {
		int share = opt.conns / nchild + (k < opt.conns % nchild);
		pid_t p = fork();
		if (p < 0)
			die("fork");
		if (p == 0) {
			close(res[0]);
			close(ctl[1]);
			setup(share);
			on_message = fanout_message;
			/* distinct nicks and source addresses per child */
			for (int i = 0; i < share; i++)
				conns[i].idx = i * nchild + k;
			open_all(5000);
			char line[64];
			int n = snprintf(line, sizeof(line), "%d\n", nopen);
			if (write(res[1], line, (size_t)n) < 0)
				_exit(1);
			/* hold, answering pings, until the parent closes ctl */
			struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
			epoll_ctl(ep, EPOLL_CTL_ADD, ctl[0], &ev);
			struct epoll_event evs[256];
			for (;;) {
				int m = epoll_wait(ep, evs, 256, 1000);
				bool quit = false;
				for (int i = 0; i < m; i++) {
					if (!evs[i].data.ptr) {
						quit = true;
						continue;
					}
					struct conn *c = evs[i].data.ptr;
					if (c->st == OPEN)
						on_readable(c);
				}
				if (quit)
					_exit(0);
			}
		}
	}
	close(res[1]);
	close(ctl[0]);
	FILE *f = fdopen(res[0], "r");
	int reached = 0, v;
	for (int k = 0; k < nchild; k++)
		if (fscanf(f, "%d", &v) == 1)
			reached += v;
	double open_s = (double)(now_ns() - t0) / 1e9;
	/* Let the workers finish storing what the connects left in Redis. */
	struct timespec ts = {.tv_sec = 2};
	nanosleep(&ts, NULL);
	long rss1 = rss_total();
	long red1 = redis_used_memory(opt.redis_port);
	close(ctl[1]);
	while (wait(NULL) > 0)
		;
	double cpu = cpu_seconds(RUSAGE_CHILDREN);
	double per = reached ? (double)(rss1 - rss0) * 1024.0 / reached : 0;
	double rper = reached ? (double)(red1 - red0) / reached : 0;
	printf("idle: %d of %d WebSockets held (%d source addresses, %d client processes) in %.1f s; "
	       "RSS %ld -> %ld KiB\n",
	       reached, opt.conns, opt.nsrc ? opt.nsrc : 1, nchild, open_s, rss0, rss1);
	printf("RESULT reached=%d rss_per_conn_b=%.0f redis_per_conn_b=%.0f rss0_kib=%ld "
	       "rss1_kib=%ld open_s=%.2f client_cpu_s=%.2f\n",
	       reached, per, rper, rss0, rss1, open_s, cpu);
	return 0;
}

/* ---- hold ---- */

#define MAX_BCAST 256
#define LOST_NS 5000000000LL

/* In memory shared by the parent and its children (MAP_SHARED before fork). Each child writes
 * only its own slot; t0 is written by the parent before the broadcast goes out, so a child that
 * has the broadcast sees it. */
struct hold_child {
	int ready;             /* the opening is over */
	int held, held_now;    /* members open then, and now */
	int got[MAX_BCAST];    /* deliveries of broadcast b within 5 s */
	int64_t last[MAX_BCAST]; /* CLOCK_MONOTONIC ns of the latest of them */
};
struct hold_shared {
	int quit;
	int64_t t0[MAX_BCAST];
	struct hold_child child[];
};
static struct hold_shared *hs;
static struct hold_child *me;
static int hold_nchild, hold_bcast = -1;

static void hold_message(struct conn *c, const char *data, size_t len)
{
	int seq = broadcast_seq(data, len);
	if (seq < 0 || seq >= opt.broadcasts || seq == c->last_seq)
		return;
	int64_t t0 = __atomic_load_n(&hs->t0[seq], __ATOMIC_ACQUIRE), now = now_ns();
	if (!t0 || now - t0 > LOST_NS)
		return;
	c->last_seq = seq;
	__atomic_store_n(&me->last[seq], now, __ATOMIC_RELAXED);
	__atomic_add_fetch(&me->got[seq], 1, __ATOMIC_RELEASE);
}

static void ignore_message(struct conn *c, const char *data, size_t len)
{
}

static bool hold_quit(void)
{
	return __atomic_load_n(&hs->quit, __ATOMIC_ACQUIRE);
}

static int hold_got(int b)
{
	int sum = 0;
	for (int k = 0; k < hold_nchild; k++)
		sum += __atomic_load_n(&hs->child[k].got[b], __ATOMIC_ACQUIRE);
	return sum;
}

static int hold_held(void)
{
	int sum = 0;
	for (int k = 0; k < hold_nchild; k++)
		sum += hs->child[k].held;
	return sum;
}

static bool hold_complete(void)
{
	return hold_got(hold_bcast) >= hold_held();
}

static bool below_inflight(void)
{
	return ninflight < opt.inflight;
}

/* Connects again, up to rounds times, the connections that failed (a refused or 503'd
 * handshake in a connect storm) or that open_all gave up on before starting. */
static void retry_dead(int rounds)
{
	for (int r = 0; r < rounds && nopen < nconn; r++) {
		struct timespec ts = {.tv_nsec = 200000000};
		nanosleep(&ts, NULL);
		int first = nextconn;
		nextconn = nconn;
		for (int i = 0; i < nconn; i++) {
			if (conns[i].st == DEAD)
				nfailed--;
			else if (i < first)
				continue;
			while (!below_inflight())
				run_loop(100, below_inflight);
			start_connect(&conns[i]);
		}
		int64_t end = now_ns() + 10000000000LL;
		while (ninflight && now_ns() < end)
			run_loop(100, all_settled);
	}
}

static void hold_child_main(int k, int share)
{
	me = &hs->child[k];
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	setup(share);
	on_message = hold_message;
	for (int i = 0; i < share; i++)
		conns[i].idx = i * hold_nchild + k; /* distinct nicks and source addresses */
	open_all(5000);
	retry_dead(3);
	me->held = me->held_now = nopen;
	__atomic_store_n(&me->ready, 1, __ATOMIC_RELEASE);
	/* hold, answering pings, until the parent says so */
	while (!hold_quit()) {
		run_loop(1000, hold_quit);
		me->held_now = nopen;
	}
	me->held_now = nopen;
	_exit(0);
}

static int run_hold(void)
{
	opt.path = NULL;
	if (opt.broadcasts > MAX_BCAST)
		opt.broadcasts = MAX_BCAST;
	int nchild = hold_nchild = (opt.conns + opt.per_proc - 1) / opt.per_proc;
	size_t shsize = sizeof(*hs) + (size_t)nchild * sizeof(hs->child[0]);
	hs = mmap(NULL, shsize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (hs == MAP_FAILED)
		die("mmap");
	int inflight = opt.inflight;
	opt.inflight = inflight / nchild > 8 ? inflight / nchild : 8; /* about the same in all */
	long rss0 = rss_total();
	long red0 = redis_used_memory(opt.redis_port);
	int64_t t0 = now_ns();
	pid_t *kids = calloc((size_t)nchild, sizeof(*kids));
	for (int k = 0; k < nchild; k++) {
		int share = opt.conns / nchild + (k < opt.conns % nchild);
		fflush(stdout);
		pid_t p = fork();
		if (p < 0)
			die("fork");
		if (p == 0)
			hold_child_main(k, share);
		kids[k] = p;
	}
	/* Wait for every child to be done opening (or gone). */
	for (;;) {
		int ready = 0;
		for (int k = 0; k < nchild; k++) {
			if (kids[k] > 0 && waitpid(kids[k], NULL, WNOHANG) == kids[k]) {
				fprintf(stderr, "bench-ws: hold child %d exited early\n", k);
				kids[k] = 0;
				hs->child[k].held = 0;
				__atomic_store_n(&hs->child[k].ready, 1, __ATOMIC_RELEASE);
			}
			ready += __atomic_load_n(&hs->child[k].ready, __ATOMIC_ACQUIRE);
		}
		if (ready == nchild)
			break;
		struct timespec ts = {.tv_nsec = 100000000};
		nanosleep(&ts, NULL);
	}
	double open_s = (double)(now_ns() - t0) / 1e9;
	int held = hold_held();
	/* Let the workers finish storing what the connects left in Redis. */
	struct timespec ts = {.tv_sec = 2};
	nanosleep(&ts, NULL);
	long rss1 = rss_total();
	long red1 = redis_used_memory(opt.redis_port);
	printf("hold: %d of %d members held by %d processes in %.1f s; RSS %ld -> %ld KiB\n", held,
	       opt.conns, nchild, open_s, rss0, rss1);
	fflush(stdout);

	/* The sender: one more member (nick nN), or the publisher's HTTP connection. */
	opt.inflight = inflight;
	setup(1);
	on_message = ignore_message;
	struct conn *sender = NULL;
	if (opt.publish_url) {
		if (open_publisher())
			sender = &pubc;
	} else {
		conns[0].idx = opt.conns;
		open_all(5000);
		if (conns[0].st == OPEN)
			sender = &conns[0];
		else
			fprintf(stderr, "bench-ws: the sender did not connect\n");
	}
	int64_t *t = calloc((size_t)opt.broadcasts + 1, sizeof(*t));
	size_t nt = 0;
	long lost = 0;
	if (sender && held) {
		run_loop(500, never); /* let the sender's join settle */
		for (int b = 0; b < opt.broadcasts; b++) {
			char msg[64];
			int n = snprintf(msg, sizeof(msg), "%sx%d", sender->pub ? "p: " : "", b);
			hold_bcast = b;
			__atomic_store_n(&hs->t0[b], now_ns(), __ATOMIC_RELEASE);
			if (!(sender->pub ? publish(sender, msg, (size_t)n)
					  : send_frame(sender, 1, msg, (size_t)n))) {
				fprintf(stderr, "bench-ws: the sender's connection failed\n");
				break;
			}
			run_loop((int)(LOST_NS / 1000000) + 200, hold_complete);
			if (b + 1 < opt.broadcasts)
				run_loop(opt.gap_ms, never);
		}
		for (int b = 0; b <= hold_bcast; b++) {
			int got = hold_got(b);
			int64_t last = 0;
			for (int k = 0; k < nchild; k++)
				if (hs->child[k].last[b] > last)
					last = hs->child[k].last[b];
			if (got >= held)
				t[nt++] = last - hs->t0[b];
			else
				lost += held - got;
			printf("broadcast %d: %d of %d members, the last after %.1f ms\n", b, got, held,
			       (double)(last - hs->t0[b]) / 1e6);
		}
	}
	__atomic_store_n(&hs->quit, 1, __ATOMIC_RELEASE);
	for (int k = 0; k < nchild; k++)
		if (kids[k] > 0)
			waitpid(kids[k], NULL, 0);
	int held_end = 0;
	for (int k = 0; k < nchild; k++)
		held_end += hs->child[k].held_now;
	double cpu = cpu_seconds(RUSAGE_CHILDREN);
	qsort(t, nt, sizeof(*t), cmp_i64);
	char redis[32] = "-";
	if (opt.redis_port && red0 >= 0 && red1 >= 0 && held)
		snprintf(redis, sizeof(redis), "%.0f", (double)(red1 - red0) / held);
	printf("RESULT held=%d conns=%d procs=%d rss_per_conn_b=%.0f redis_per_conn_b=%s "
	       "rss0_kib=%ld rss1_kib=%ld p50_ms=%.2f p95_ms=%.2f lost=%ld complete=%zu "
	       "broadcasts=%d held_end=%d open_s=%.2f client_cpu_s=%.2f\n",
	       held, opt.conns, nchild, held ? (double)(rss1 - rss0) * 1024.0 / held : 0.0, redis,
	       rss0, rss1, pct_ms(t, nt, 0.50), pct_ms(t, nt, 0.95), lost, nt, hold_bcast + 1,
	       held_end, open_s, cpu);
	fflush(stdout);
	free(t);
	free(kids);
	return held ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench-ws echo|fanout|idle|hold --port P[,P2] [options]; see the source\n");
	exit(2);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		usage();
	opt.mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--port")) {
			char *s = strdup(v), *save = NULL;
			for (char *t = strtok_r(s, ",", &save); t && opt.nports < MAX_PORTS;
			     t = strtok_r(NULL, ",", &save))
				opt.ports[opt.nports++] = atoi(t);
			free(s);
		} else if (!strcmp(a, "--src")) {
			char *s = strdup(v), *save = NULL;
			for (char *t = strtok_r(s, ",", &save); t && opt.nsrc < MAX_SRC;
			     t = strtok_r(NULL, ",", &save))
				if (inet_pton(AF_INET, t, &opt.src[opt.nsrc]) == 1)
					opt.nsrc++;
			free(s);
		} else if (!strcmp(a, "--conns") || !strcmp(a, "--members")) {
			opt.conns = atoi(v);
		} else if (!strcmp(a, "--msgs")) {
			opt.msgs = atoi(v);
		} else if (!strcmp(a, "--size")) {
			opt.size = atoi(v);
			opt.sized = true;
			if (opt.size < 1 || opt.size > (int)sizeof(payload))
				usage();
		} else if (!strcmp(a, "--path")) {
			opt.path = v;
		} else if (!strcmp(a, "--deflate")) {
			opt.deflate = atof(v);
		} else if (!strcmp(a, "--room")) {
			opt.room = v;
		} else if (!strcmp(a, "--broadcasts")) {
			opt.broadcasts = atoi(v);
		} else if (!strcmp(a, "--gap-ms")) {
			opt.gap_ms = atoi(v);
		} else if (!strcmp(a, "--inflight")) {
			opt.inflight = atoi(v);
		} else if (!strcmp(a, "--pid")) {
			char *s = strdup(v), *save = NULL;
			for (char *t = strtok_r(s, ",", &save); t && opt.npids < 16;
			     t = strtok_r(NULL, ",", &save))
				opt.pids[opt.npids++] = atoi(t);
			free(s);
		} else if (!strcmp(a, "--redis-port")) {
			opt.redis_port = atoi(v);
		} else if (!strcmp(a, "--sub-path")) {
			opt.sub_path = v;
		} else if (!strcmp(a, "--publish-url")) {
			opt.publish_url = v;
		} else if (!strcmp(a, "--per-proc")) {
			opt.per_proc = atoi(v);
			if (opt.per_proc < 1)
				usage();
		} else {
			usage();
		}
	}
	if (!opt.nports || opt.conns < 1)
		usage();
	if (!strcmp(opt.mode, "echo"))
		return run_echo();
	if (!strcmp(opt.mode, "fanout"))
		return run_fanout();
	if (!strcmp(opt.mode, "idle"))
		return run_idle();
	if (!strcmp(opt.mode, "hold"))
		return run_hold();
	usage();
	return 2;
}
