/* libFuzzer driver for the msgpack decoder: whatever decodes must re-encode to bytes that decode
 * to an equal message, and re-encoding that gives the same bytes again. Any mismatch aborts. */
#include "laurel/message.h"
#include "common/buf.h"
#include "common/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct laurel_msg *m = NULL;
	if (laurel_msg_decode(data, size, NULL, &m) != 0)
		return 0;

	char *enc;
	size_t len;
	laurel_msg_encode(m, &enc, &len);
	/* float32 grows to float64 on the way out, so the size limit must not bite here. */
	struct laurel_decode_limits limits = {.max_bytes = SIZE_MAX};
	struct laurel_msg *m2 = NULL;
	if (laurel_msg_decode(enc, len, &limits, &m2) != 0)
		abort();
	if (!laurel_value_equal(laurel_msg_croot(m), laurel_msg_croot(m2)))
		abort();
	char *enc2;
	size_t len2;
	laurel_msg_encode(m2, &enc2, &len2);
	if (len2 != len || memcmp(enc, enc2, len) != 0)
		abort();

	struct laurel_msg *c = laurel_msg_clone(m);
	if (!laurel_value_equal(laurel_msg_croot(m), laurel_msg_croot(c)))
		abort();

	/* The extra-key path: the key ends up last, once, with the value given. */
	struct buf b;
	buf_init(&b);
	codec_encode(m, "__asgi_channel__", &b);
	codec_put_str(&b, "a!b", 3);
	struct laurel_msg *m3 = NULL;
	if (laurel_msg_decode(b.data, b.len, &limits, &m3) != 0)
		abort();
	const struct laurel_value *r3 = laurel_msg_croot(m3);
	const struct laurel_entry *last = &r3->u.map.items[r3->u.map.len - 1];
	if (last->key.len != 16 || memcmp(last->key.ptr, "__asgi_channel__", 16) != 0 ||
	    last->value.type != LAUREL_TEXT || strcmp(last->value.u.s.ptr, "a!b") != 0)
		abort();
	laurel_map_remove(laurel_msg_root(c), "__asgi_channel__");
	laurel_map_remove(laurel_msg_root(m3), "__asgi_channel__");
	if (!laurel_value_equal(laurel_msg_croot(c), laurel_msg_croot(m3)))
		abort();

	buf_fini(&b);
	laurel_msg_free(m3);
	laurel_msg_free(c);
	free(enc2);
	laurel_msg_free(m2);
	free(enc);
	laurel_msg_free(m);
	return 0;
}
