#include "tests/lib/wsframe.h"

#include <assert.h>
#include <string.h>

void wsframe_append(struct buf *b, uint8_t b0, bool masked, const void *data, size_t len)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	const uint8_t *p = data;
	uint8_t mbit = masked ? 0x80 : 0;
	buf_append_byte(b, b0);
	if (len < 126) {
		buf_append_byte(b, (unsigned char)(mbit | len));
	} else if (len < 65536) {
		buf_append_byte(b, mbit | 126);
		buf_append_byte(b, (unsigned char)(len >> 8));
		buf_append_byte(b, (unsigned char)len);
	} else {
		buf_append_byte(b, mbit | 127);
		for (int i = 7; i >= 0; i--)
			buf_append_byte(b, (unsigned char)((uint64_t)len >> (8 * i)));
	}
	if (masked)
		buf_append(b, key, 4);
	for (size_t i = 0; i < len; i++)
		buf_append_byte(b, (unsigned char)(masked ? p[i] ^ key[i % 4] : p[i]));
}

void wsframe_close(struct buf *b, int code, const void *reason, size_t rlen)
{
	uint8_t p[125];
	assert(rlen <= sizeof(p) - 2);
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	memcpy(p + 2, reason, rlen);
	wsframe_append(b, 0x88, true, p, 2 + rlen);
}
