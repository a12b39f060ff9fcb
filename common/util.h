/* Small helpers shared by every module: allocation that aborts on exhaustion, clocks, random. */
#ifndef LAUREL_COMMON_UTIL_H
#define LAUREL_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory is not recoverable in laurel: these abort with a message instead of returning NULL.
 * Sizes a peer controls must be checked against configured limits before they get here. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Monotonic and wall clocks. */
int64_t util_now_ms(void);     /* CLOCK_MONOTONIC, milliseconds */
int64_t util_now_us(void);     /* CLOCK_MONOTONIC, microseconds */
double util_wall_time(void);   /* CLOCK_REALTIME, seconds as a double (Redis zset scores) */

/* Fills buf with n bytes from the kernel's random source (getrandom). Never fails. */
void util_random_bytes(void *buf, size_t n);

/* A fast non-cryptographic generator (xoshiro256**), for names and shuffles. Not thread-safe:
 * one per owner. util_rng_init seeds it from util_random_bytes. */
struct util_rng {
	uint64_t s[4];
};
void util_rng_init(struct util_rng *r);
uint64_t util_rng_next(struct util_rng *r);
/* Uniform in [0, n), n > 0. */
uint64_t util_rng_below(struct util_rng *r, uint64_t n);
/* Writes n random ASCII letters (a-z, A-Z) to out; does not terminate. */
void util_rng_letters(struct util_rng *r, char *out, size_t n);
/* Writes n random lowercase hex digits to out; does not terminate. */
void util_rng_hex(struct util_rng *r, char *out, size_t n);

/* CRC-32 as in zlib (polynomial 0xEDB88320, init and final xor 0xFFFFFFFF). */
uint32_t util_crc32(const void *data, size_t len);



/* SHA-1 (for Redis script hashes and the WebSocket handshake). */
void util_sha1(const void *data, size_t len, unsigned char digest[20]);
/* The lowercase hex form, 40 characters and a NUL. */
void util_sha1_hex(const void *data, size_t len, char out[41]);

/* Standard base64 with padding of n bytes into out (4 * ((n + 2) / 3) characters and a NUL). */
void util_base64_encode(const void *data, size_t n, char *out);
/* Decodes standard base64 s[0..len) (RFC 4648 §4, '=' padding required, as Python's b64decode
 * wants) into out, which holds len / 4 * 3 bytes, and sets *n to the number written. Returns 0,
 * or -EINVAL with the reason in err ("character 3 ('!') is not in the base64 alphabet"). */
int util_base64_decode(const char *s, size_t len, void *out, size_t *n, char *err, size_t errlen);

/* Switches to user and/or group (names or numbers; NULL: unchanged) for good: supplementary
 * groups are set to the user's (or just the group), then the group id, then the user id, and it is
 * checked that root cannot be regained. A user without a group takes the user's primary group.
 * Returns 0 (also when both are NULL), or -1 with a message in err. */
int util_drop_privileges(const char *user, const char *group, char *err, size_t errlen);

/* Overwrites with '*' the password of every URL in s ("scheme://user:PASSWORD@host...") and the
 * value of every "password=" query parameter. */
void util_scrub_secrets(char *s);

#endif
