/* msgpack encoding of laurel messages (docs/protocol.md §1). The only module that touches msgpack-c.
 * The public entry points are laurel_msg_encode / laurel_msg_decode in laurel/message.h. */
#ifndef LAUREL_COMMON_CODEC_H
#define LAUREL_COMMON_CODEC_H

#include "laurel/message.h"
#include "common/buf.h"

/* Appends the msgpack encoding of m to out. If extra_key is not NULL, the root map is written with
 * room for one more entry: any entry of m named extra_key is left out, the others are written in
 * order, then the key extra_key; the caller must append exactly one value (codec_put_*). */
void codec_encode(const struct laurel_msg *m, const char *extra_key, struct buf *out);

/* Append single msgpack items, smallest width. */
void codec_put_str(struct buf *out, const char *s, size_t len);
void codec_put_bin(struct buf *out, const void *p, size_t len);
void codec_put_array_header(struct buf *out, size_t n);
void codec_put_map_header(struct buf *out, size_t n);
void codec_put_int(struct buf *out, int64_t i);

#endif
