/* The floor of any Redis-mediated design: one RPUSH/BLPOP round trip each way between two
 * hiredis clients on the same Redis (a "request" pushed, popped by an echo thread, pushed back,
 * popped), one message in flight, timed one by one. Prints numbers, asserts nothing.
 *
 * Usage: bench-floor PORT [SECONDS] */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static int port;
static volatile int stop;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *echo(void *arg)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	while (!stop) {
		redisReply *r = redisCommand(c, "BLPOP floor:ping 0.2");
		if (r && r->type == REDIS_REPLY_ARRAY)
			freeReplyObject(redisCommand(c, "RPUSH floor:pong %b", r->element[1]->str,
						     r->element[1]->len));
		freeReplyObject(r);
	}
	redisFree(c);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench-floor PORT [SECONDS]\n");
		return 2;
	}
	port = atoi(argv[1]);
	double secs = argc > 2 ? atof(argv[2]) : 3;
	redisContext *c = redisConnect("127.0.0.1", port);
	if (!c || c->err) {
		fprintf(stderr, "bench-floor: cannot connect to 127.0.0.1:%d\n", port);
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, echo, NULL);
	const char payload[] = "0123456789012345678901234567890123456789012345678901234567890123";
	size_t cap = 1 << 22, n = 0;
	int64_t *lat = malloc(cap * sizeof(*lat));
	int64_t t0 = now_ns(), end = t0 + (int64_t)(secs * 1e9);
	while (n < cap) {
		int64_t a = now_ns();
		if (a >= end)
			break;
		freeReplyObject(redisCommand(c, "RPUSH floor:ping %s", payload));
		freeReplyObject(redisCommand(c, "BLPOP floor:pong 0"));
		lat[n++] = now_ns() - a;
	}
	double el = (double)(now_ns() - t0) / 1e9;
	stop = 1;
	pthread_join(t, NULL);
	freeReplyObject(redisCommand(c, "DEL floor:ping floor:pong"));
	redisFree(c);
	qsort(lat, n, sizeof(*lat), cmp);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	printf("floor: %zu RPUSH/BLPOP round trips in %.2f s (two hops, one in flight)\n", n, el);
	printf("RESULT rt_per_s=%.0f p50_ms=%.3f p99_ms=%.3f client_cpu_pct=%.0f\n", (double)n / el,
	       (double)lat[n / 2] / 1e6, (double)lat[(size_t)((double)(n - 1) * 0.99)] / 1e6,
	       100.0 * cpu / el);
	free(lat);
	return 0;
}
