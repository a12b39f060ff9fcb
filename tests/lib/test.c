#include "tests/lib/test.h"
#include "laurel/layer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int test_failures;
int test_checks;

void test_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	test_failures++;
	fprintf(stderr, "%s:%d: FAILED: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void test_hexdump(const char *label, const void *p, size_t n)
{
	const unsigned char *b = p;
	fprintf(stderr, "%s:", label);
	for (size_t i = 0; i < n && i < 512; i++)
		fprintf(stderr, " %02x", b[i]);
	if (n > 512)
		fprintf(stderr, " ...");
	fputc('\n', stderr);
}

int test_done(void)
{
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures ? 1 : 0;
}

int test_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("test_free_port");
		exit(2);
	}
	close(fd);
	return ntohs(sa.sin_port);
}

static int spawn(struct test_redis *r)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", r->port);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0) {
			dup2(devnull, 1);
			close(devnull);
		}
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--dir", r->dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
		       "--logfile", "", "--loglevel", "warning", (char *)NULL);
		perror("exec redis-server");
		_exit(127);
	}
	r->pid = pid;
	for (int i = 0; i < 500; i++) {
		redisContext *c = redisConnect("127.0.0.1", r->port);
		if (c && !c->err) {
			redisReply *rep = redisCommand(c, "PING");
			int ok = rep && rep->type == REDIS_REPLY_STATUS;
			freeReplyObject(rep);
			redisFree(c);
			if (ok)
				return 0;
		} else if (c) {
			redisFree(c);
		}
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			r->pid = 0;
			fprintf(stderr, "redis-server exited at start (port %d)\n", r->port);
			return -1;
		}
		usleep(10000);
	}
	fprintf(stderr, "redis-server did not answer on port %d\n", r->port);
	return -1;
}

int test_redis_start(struct test_redis *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/laurel-test-redis-XXXXXX");
	if (!mkdtemp(r->dir)) {
		perror("mkdtemp");
		return -1;
	}
	r->port = test_free_port();
	snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d", r->port);
	return spawn(r);
}

int test_redis_restart(struct test_redis *r)
{
	return spawn(r);
}

void test_redis_stop(struct test_redis *r, int kill9)
{
	if (r->pid <= 0)
		return;
	kill(r->pid, kill9 ? SIGKILL : SIGTERM);
	waitpid(r->pid, NULL, 0);
	r->pid = 0;
}

void test_redis_cleanup(struct test_redis *r)
{
	test_redis_stop(r, 0);
	if (r->dir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", r->dir);
		r->dir[0] = '\0';
	}
}

static void append_reply(char *out, size_t cap, redisReply *rep)
{
	size_t n = strlen(out);
	switch (rep->type) {
	case REDIS_REPLY_INTEGER:
		snprintf(out + n, cap - n, "%lld", rep->integer);
		break;
	case REDIS_REPLY_NIL:
		snprintf(out + n, cap - n, "(nil)");
		break;
	case REDIS_REPLY_ARRAY:
		for (size_t i = 0; i < rep->elements; i++) {
			if (i)
				snprintf(out + strlen(out), cap - strlen(out), "\n");
			append_reply(out, cap, rep->element[i]);
		}
		break;
	default:
		snprintf(out + n, cap - n, "%.*s", (int)rep->len, rep->str);
	}
}

const char *test_redis_cmd(struct test_redis *r, const char *fmt, ...)
{
	static char out[65536];
	out[0] = '\0';
	redisContext *c = redisConnect("127.0.0.1", r->port);
	if (!c || c->err) {
		snprintf(out, sizeof(out), "(connect failed)");
		redisFree(c);
		return out;
	}
	va_list ap;
	va_start(ap, fmt);
	redisReply *rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (!rep)
		snprintf(out, sizeof(out), "(error)");
	else
		append_reply(out, sizeof(out), rep);
	freeReplyObject(rep);
	redisFree(c);
	return out;
}

/* asgi_redis 1.4.3's send script, as captured. */
static const char chansend[] = "if redis.call('llen', KEYS[2]) >= tonumber(ARGV[3]) then\n"
			       "    return redis.error_reply(\"full\")\n"
			       "end\n"
			       "redis.call('set', KEYS[1], ARGV[1])\n"
			       "redis.call('expire', KEYS[1], ARGV[2])\n"
			       "redis.call('rpush', KEYS[2], KEYS[1])\n"
			       "redis.call('expire', KEYS[2], ARGV[2] + 1)\n";

int test_asgi_send(struct redisContext *c, const char *body_key, const char *queue_key,
		   const void *bytes, size_t len)
{
	redisReply *rep = redisCommand(c, "EVAL %s 2 %s %s %b 60 100", chansend, body_key,
				       queue_key, bytes, len);
	int rc = rep && rep->type != REDIS_REPLY_ERROR ? 0 : -1;
	freeReplyObject(rep);
	return rc;
}

struct laurel_layer *test_memory_layer(const struct laurel_capacity *caps, size_t n)
{
	const char *url = "memory://";
	struct laurel_layer_options o = {
		.urls = &url, .nurls = 1, .capacities = caps, .ncapacities = n};
	struct laurel_layer *l = NULL;
	char err[256];
	if (laurel_layer_new(&l, &o, err, sizeof(err))) {
		fprintf(stderr, "memory layer: %s\n", err);
		exit(2);
	}
	return l;
}

bool test_take(struct laurel_layer *layer, const char *channel, struct laurel_received *r)
{
	const char *chans[] = {channel};
	size_t got = 0;
	if (laurel_layer_receive(layer, chans, 1, 0, r, 1, &got) < 0)
		test_fail(__FILE__, __LINE__, "receive from %s: %s", channel,
			  laurel_layer_error(layer));
	return got == 1;
}

size_t test_load_vectors(const char *path, struct test_vector *v, size_t max)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	char *line = NULL;
	size_t cap = 0, n = 0;
	while (getline(&line, &cap, f) > 0 && n < max) {
		if (strncmp(line, "hex:", 4) != 0)
			continue;
		struct test_vector *t = &v[n++];
		t->bytes = malloc(strlen(line) / 2 + 1);
		t->len = 0;
		const char *p = line + 4;
		unsigned x;
		int k;
		while (sscanf(p, " %2x%n", &x, &k) == 1) {
			t->bytes[t->len++] = (unsigned char)x;
			p += k;
		}
	}
	free(line);
	fclose(f);
	return n;
}

void test_free_vectors(struct test_vector *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].bytes);
}
