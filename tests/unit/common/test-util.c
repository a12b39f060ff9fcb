#include "common/util.h"
#include "common/buf.h"
#include "tests/lib/test.h"

#include <errno.h>

static void test_base64(void)
{
	static const struct {
		const char *plain, *b64;
	} v[] = {{"", ""},
		 {"f", "Zg=="},
		 {"fo", "Zm8="},
		 {"foo", "Zm9v"},
		 {"foob", "Zm9vYg=="},
		 {"fooba", "Zm9vYmE="},
		 {"foobar", "Zm9vYmFy"}};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		char enc[16], dec[16];
		size_t n = 99;
		util_base64_encode(v[i].plain, strlen(v[i].plain), enc);
		CHECK_STR(enc, v[i].b64);
		CHECK_EQ(util_base64_decode(v[i].b64, strlen(v[i].b64), dec, &n, NULL, 0), 0);
		CHECK_MEM(dec, n, v[i].plain, strlen(v[i].plain));
	}
	unsigned char all[256], back[256];
	char enc[400];
	size_t n = 0;
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	util_base64_encode(all, sizeof(all), enc);
	CHECK_EQ(util_base64_decode(enc, strlen(enc), back, &n, NULL, 0), 0);
	CHECK_MEM(back, n, all, sizeof(all));
	char err[128];
	CHECK_EQ(util_base64_decode("Zm9v-A==", 8, back, &n, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "character 5 ('-') is not in the base64 alphabet");
	CHECK_EQ(util_base64_decode("Zg=", 3, back, &n, err, sizeof(err)), -EINVAL);
	CHECK_EQ(util_base64_decode("Zg==Zg==", 8, back, &n, err, sizeof(err)), -EINVAL);
	CHECK_STR(err, "'=' at character 3: padding may only end the text");
	CHECK_EQ(util_base64_decode("Z===", 4, back, &n, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	test_base64();
	/* zlib's crc32 of well-known strings. */
	CHECK_EQ(util_crc32("", 0), 0);
	CHECK_EQ(util_crc32("123456789", 9), 0xCBF43926u);
	CHECK_EQ(util_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414FA339u);

	char sha[41];
	util_sha1_hex("abc", 3, sha);
	CHECK_STR(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
	util_sha1_hex("", 0, sha);
	CHECK_STR(sha, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	const char *long56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	util_sha1_hex(long56, strlen(long56), sha);
	CHECK_STR(sha, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	/* asgi_redis's send script hashes to what the capture shows redis-py sending. */
	const char *chansend = "\n        if redis.call('llen', KEYS[2]) >= tonumber(ARGV[3]) then\n"
			       "            return redis.error_reply(\"full\")\n        end\n"
			       "        redis.call('set', KEYS[1], ARGV[1])\n"
			       "        redis.call('expire', KEYS[1], ARGV[2])\n"
			       "        redis.call('rpush', KEYS[2], KEYS[1])\n"
			       "        redis.call('expire', KEYS[2], ARGV[2] + 1)\n    ";
	util_sha1_hex(chansend, strlen(chansend), sha);
	CHECK_STR(sha, "ea89127ce896fc394c6a899ef4fdb420368083f5");

	struct util_rng r;
	util_rng_init(&r);
	char s[13] = {0};
	util_rng_letters(&r, s, 12);
	for (int i = 0; i < 12; i++)
		CHECK((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'));
	char h[33] = {0};
	util_rng_hex(&r, h, 32);
	for (int i = 0; i < 32; i++)
		CHECK((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'));
	int seen[7] = {0};
	for (int i = 0; i < 7000; i++)
		seen[util_rng_below(&r, 7)]++;
	for (int i = 0; i < 7; i++)
		CHECK_INT(seen[i], >, 700);

	struct buf b;
	buf_init(&b);
	buf_printf(&b, "%s-%d", "abc", 42);
	CHECK_STR(b.data, "abc-42");
	buf_consume(&b, 4);
	CHECK_STR(b.data, "42");
	for (int i = 0; i < 1000; i++)
		buf_append_byte(&b, 'x');
	CHECK_EQ(b.len, 1002);
	buf_fini(&b);
	return test_done();
}
