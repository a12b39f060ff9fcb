/* Where permessage-deflate starts to pay: for chat-like JSON messages of growing size (the chat
 * example's envelopes around English text, and a JSON list of records), the compressed size at
 * zlib levels 1, 3, 6 and 9 (window 2^15, no context, as laurel sends) and the time to compress
 * and to inflate one message. Prints numbers, asserts nothing.
 *
 * Usage: bench-deflate [ROUNDS] */
#include "interface/deflate.h"
#include "common/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char prose[] =
	"The train went into the tunnel just as Ann was about to answer, and when it came out "
	"again the room had moved on: Bob had posted the minutes, Carol had asked who would "
	"bring the projector on Thursday, and somebody had shared a link to the new schedule. "
	"She scrolled up, read what she had missed, and typed that she could bring it if the "
	"meeting started after ten, because the first train from her station arrives at nine "
	"forty. Dave said ten was fine for him too, and that the room on the second floor was "
	"free all morning, so they could set up early and test the sound before anyone came. ";

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A chat envelope carrying about n bytes in all. */
static void chat_message(struct buf *b, size_t n, unsigned seed)
{
	buf_reset(b);
	buf_printf(b, "{\"group\":\"chat-lobby\",\"epoch\":\"k3J9xQ2mVb7LtR0a\",\"offset\":%u,"
		      "\"text\":\"{\\\"user\\\":\\\"ann\\\",\\\"message\\\":\\\"", 1000 + seed);
	size_t start = (seed * 37) % (sizeof(prose) - 1);
	while (b->len + 8 < n) {
		buf_append_byte(b, (unsigned char)prose[start]);
		start = (start + 1) % (sizeof(prose) - 1);
	}
	buf_append_str(b, "\\\"}\"}");
}

/* A JSON list of presence records, about n bytes. */
static void records(struct buf *b, size_t n, unsigned seed)
{
	buf_reset(b);
	buf_append_str(b, "[");
	for (unsigned i = 0; b->len + 2 < n; i++)
		buf_printf(b, "%s{\"id\":%u,\"name\":\"user%u\",\"online\":%s,\"room\":\"chat-%u\"}",
			   i ? "," : "", seed * 1000 + i, (seed + i * 7) % 9973,
			   (i + seed) % 3 ? "true" : "false", (i + seed) % 5);
	buf_append_str(b, "]");
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 2000;
	static const size_t sizes[] = {16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512, 1024,
				       4096, 16384, 65536};
	static const int levels[] = {1, 3, 6, 9};
	struct buf msg, out, back;
	buf_init(&msg);
	buf_init(&out);
	buf_init(&back);
	for (int kind = 0; kind < 2; kind++) {
		printf("%s\n", kind ? "JSON records" : "chat envelopes (prose)");
		printf("%7s", "bytes");
		for (size_t l = 0; l < sizeof(levels) / sizeof(*levels); l++)
			printf("  L%d: ratio  us/msg", levels[l]);
		printf("  inflate us\n");
		for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes); s++) {
			int n = sizes[s] > 4096 ? rounds / 20 + 1 : rounds;
			/* the messages' real mean length (the envelope alone is about 100 bytes) */
			size_t total = 0;
			for (int r = 0; r < 16; r++) {
				kind ? records(&msg, sizes[s], (unsigned)r)
				     : chat_message(&msg, sizes[s], (unsigned)r);
				total += msg.len;
			}
			printf("%7zu", total / 16);
			for (size_t l = 0; l < sizeof(levels) / sizeof(*levels); l++) {
				uint64_t in = 0, outn = 0;
				int64_t t0 = now_ns();
				for (int r = 0; r < n; r++) {
					kind ? records(&msg, sizes[s], (unsigned)r)
					     : chat_message(&msg, sizes[s], (unsigned)r);
					buf_reset(&out);
					outn += deflate_message(&out, msg.data, msg.len, 15, levels[l]);
					in += msg.len;
				}
				int64_t t1 = now_ns();
				/* the same messages made without compressing, to take their cost out */
				for (int r = 0; r < n; r++)
					kind ? records(&msg, sizes[s], (unsigned)r)
					     : chat_message(&msg, sizes[s], (unsigned)r);
				int64_t t2 = now_ns();
				double us = ((double)(t1 - t0) - (double)(t2 - t1)) / n / 1000.0;
				printf("  %9.3f %7.2f", (double)outn / (double)in, us);
			}
			/* inflate, level 6's output */
			int64_t ti = 0;
			for (int r = 0; r < n; r++) {
				kind ? records(&msg, sizes[s], (unsigned)r)
				     : chat_message(&msg, sizes[s], (unsigned)r);
				buf_reset(&out);
				deflate_message(&out, msg.data, msg.len, 15, 6);
				buf_reset(&back);
				int64_t a = now_ns();
				int rc = deflate_inflate(&back, (const uint8_t *)out.data, out.len,
							 1 << 20);
				ti += now_ns() - a;
				if (rc || back.len != msg.len || memcmp(back.data, msg.data, msg.len)) {
					fprintf(stderr, "round trip failed at %zu bytes\n", sizes[s]);
					return 1;
				}
			}
			printf("  %9.2f\n", (double)ti / n / 1000.0);
		}
		printf("\n");
	}
	deflate_thread_cleanup();
	buf_fini(&msg);
	buf_fini(&out);
	buf_fini(&back);
	return 0;
}
