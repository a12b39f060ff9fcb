/* Test helpers: value-printing checks. A failed check prints what was compared, where, and marks
 * the test failed; the test goes on so one run shows every failure. test_done() returns the exit
 * status for main(). */
#ifndef LAUREL_TEST_H
#define LAUREL_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

extern int test_failures;
extern int test_checks;

void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_hexdump(const char *label, const void *p, size_t n);
/* Prints a summary line and returns 0 if every check passed, else 1. */
int test_done(void);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		test_checks++;                                                                     \
		if (!(cond))                                                                       \
			test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                         \
	} while (0)

#define CHECK_INT(a, op, b)                                                                        \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		test_checks++;                                                                     \
		if (!(_a op _b))                                                                   \
			test_fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld", #a, #op, #b, _a,   \
				  _b);                                                             \
	} while (0)

#define CHECK_EQ(a, b) CHECK_INT(a, ==, b)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		test_checks++;                                                                     \
		if (!_a || !_b || strcmp(_a, _b) != 0)                                             \
			test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" vs \"%s\"", #a, #b,        \
				  _a ? _a : "(null)", _b ? _b : "(null)");                         \
	} while (0)

#define CHECK_MEM(a, alen, b, blen)                                                                \
	do {                                                                                       \
		const void *_a = (a), *_b = (b);                                                   \
		size_t _al = (alen), _bl = (blen);                                                 \
		test_checks++;                                                                     \
		if (_al != _bl || (_al && memcmp(_a, _b, _al) != 0)) {                             \
			test_fail(__FILE__, __LINE__, "%s == %s (%zu vs %zu bytes)", #a, #b, _al,  \
				  _bl);                                                            \
			test_hexdump("  got     ", _a, _al);                                       \
			test_hexdump("  expected", _b, _bl);                                       \
		}                                                                                  \
	} while (0)

/* The msgpack bytes of each "hex:" line of a capture catalog (../shared/wire/), in file order. */
struct test_vector {
	unsigned char *bytes;
	size_t len;
};
/* Loads up to max vectors from path; returns how many. Exits 2 if the file cannot be read. */
size_t test_load_vectors(const char *path, struct test_vector *v, size_t max);
void test_free_vectors(struct test_vector *v, size_t n);

/* A redis-server started by a test on a free loopback port, in its own temporary directory. */
struct test_redis {
	int port;
	int pid;
	char dir[256];
	char url[128];
};
/* Starts one and waits until it answers PING. Returns 0 or -1 (with a message on stderr). */
int test_redis_start(struct test_redis *r);
/* Starts it again on the same port (after test_redis_stop). */
int test_redis_restart(struct test_redis *r);
/* Stops it (SIGKILL if kill9, else SIGTERM) and waits for it; keeps dir for a restart. */
void test_redis_stop(struct test_redis *r, int kill9);
/* Stops it if running and removes its directory. */
void test_redis_cleanup(struct test_redis *r);
/* Runs one command on it and returns the reply as text (integers in decimal, nil as "(nil)",
 * arrays joined with '\n'), in a static buffer. For checking keys from the outside. */
const char *test_redis_cmd(struct test_redis *r, const char *fmt, ...);
/* asgi_redis 1.4.3's send, the way the Python side does it (its Lua script, as captured): bytes
 * stored under body_key and body_key pushed onto queue_key (full keys, "asgi:..."), 60 s expiry,
 * refused when the queue holds 100. Returns 0, or -1 on an error reply or a failed connection. */
struct redisContext;
int test_asgi_send(struct redisContext *c, const char *body_key, const char *queue_key,
		   const void *bytes, size_t len);
/* A new in-memory layer ("memory://") with channel capacities caps[0..n) (n may be 0); exits 2
 * with a message if it cannot be made. The caller frees it with laurel_layer_free. */
struct laurel_layer;
struct laurel_capacity;
struct laurel_received;
struct laurel_layer *test_memory_layer(const struct laurel_capacity *caps, size_t n);
/* Takes the next message waiting on channel (a process channel "x!" for any of its own) without
 * waiting, into r (the caller finishes it with laurel_received_fini). False if there is none. */
bool test_take(struct laurel_layer *layer, const char *channel, struct laurel_received *r);
/* A free TCP port on 127.0.0.1. */
int test_free_port(void);

#endif
