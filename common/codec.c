#include "common/codec.h"
#include "common/util.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#define DEFAULT_MAX_BYTES ((size_t)64 * 1024 * 1024)
#define DEFAULT_MAX_DEPTH 32
/* msgpack-c's unpacker keeps open containers on a fixed stack (MSGPACK_EMBED_STACK_SIZE, 32 in
 * the library as built) and fails beyond it, so a larger configured depth is capped here. */
#define MAX_DEPTH 32

/* --- Encoding -------------------------------------------------------------------------------- */

static int write_buf(void *data, const char *p, size_t len)
{
	buf_append(data, p, len);
	return 0;
}

static void packer_init(msgpack_packer *pk, struct buf *out)
{
	msgpack_packer_init(pk, out, write_buf);
}

/* msgpack lengths are 32 bits; nothing that large fits in a message laurel would send. */
static void check_len(size_t len)
{
	if (len > UINT32_MAX) {
		fprintf(stderr, "laurel: msgpack item of %zu bytes or items is too big\n", len);
		abort();
	}
}

static void pack_value(msgpack_packer *pk, const struct laurel_value *v)
{
	switch (v->type) {
	case LAUREL_NIL:
		msgpack_pack_nil(pk);
		break;
	case LAUREL_BOOL:
		if (v->u.b)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		break;
	case LAUREL_INT:
		/* Smallest width; non-negative values use the unsigned forms, as Python does. */
		msgpack_pack_int64(pk, v->u.i);
		break;
	case LAUREL_DOUBLE:
		msgpack_pack_double(pk, v->u.d);
		break;
	case LAUREL_TEXT:
		check_len(v->u.s.len);
		msgpack_pack_str_with_body(pk, v->u.s.ptr, v->u.s.len);
		break;
	case LAUREL_BYTES:
		check_len(v->u.s.len);
		msgpack_pack_bin_with_body(pk, v->u.s.ptr, v->u.s.len);
		break;
	case LAUREL_LIST:
		check_len(v->u.list.len);
		msgpack_pack_array(pk, v->u.list.len);
		for (size_t i = 0; i < v->u.list.len; i++)
			pack_value(pk, &v->u.list.items[i]);
		break;
	case LAUREL_MAP:
		check_len(v->u.map.len);
		msgpack_pack_map(pk, v->u.map.len);
		for (size_t i = 0; i < v->u.map.len; i++) {
			const struct laurel_entry *e = &v->u.map.items[i];
			check_len(e->key.len);
			msgpack_pack_str_with_body(pk, e->key.ptr, e->key.len);
			pack_value(pk, &e->value);
		}
		break;
	}
}

static bool key_is(const struct laurel_str *k, const char *key, size_t keylen)
{
	return k->len == keylen && (keylen == 0 || memcmp(k->ptr, key, keylen) == 0);
}

void codec_encode(const struct laurel_msg *m, const char *extra_key, struct buf *out)
{
	const struct laurel_value *root = laurel_msg_croot(m);
	msgpack_packer pk;
	packer_init(&pk, out);
	if (!extra_key) {
		pack_value(&pk, root);
		return;
	}
	size_t klen = strlen(extra_key), n = 0;
	for (size_t i = 0; i < root->u.map.len; i++)
		if (!key_is(&root->u.map.items[i].key, extra_key, klen))
			n++;
	check_len(n + 1);
	msgpack_pack_map(&pk, n + 1);
	for (size_t i = 0; i < root->u.map.len; i++) {
		const struct laurel_entry *e = &root->u.map.items[i];
		if (key_is(&e->key, extra_key, klen))
			continue;
		msgpack_pack_str_with_body(&pk, e->key.ptr, e->key.len);
		pack_value(&pk, &e->value);
	}
	codec_put_str(out, extra_key, klen);
}

void codec_put_str(struct buf *out, const char *s, size_t len)
{
	msgpack_packer pk;
	packer_init(&pk, out);
	check_len(len);
	msgpack_pack_str_with_body(&pk, s, len);
}

void codec_put_bin(struct buf *out, const void *p, size_t len)
{
	msgpack_packer pk;
	packer_init(&pk, out);
	check_len(len);
	msgpack_pack_bin_with_body(&pk, p, len);
}

void codec_put_array_header(struct buf *out, size_t n)
{
	msgpack_packer pk;
	packer_init(&pk, out);
	check_len(n);
	msgpack_pack_array(&pk, n);
}

void codec_put_map_header(struct buf *out, size_t n)
{
	msgpack_packer pk;
	packer_init(&pk, out);
	check_len(n);
	msgpack_pack_map(&pk, n);
}

void codec_put_int(struct buf *out, int64_t i)
{
	msgpack_packer pk;
	packer_init(&pk, out);
	msgpack_pack_int64(&pk, i);
}

void laurel_msg_encode(const struct laurel_msg *m, char **data, size_t *len)
{
	struct buf b;
	buf_init(&b);
	codec_encode(m, NULL, &b);
	*data = b.data;
	*len = b.len;
}

/* --- Decoding -------------------------------------------------------------------------------- */

/* msgpack-c allocates the storage of an array or map from its claimed count before reading the
 * items, so a few bytes claiming billions of items would make it allocate gigabytes. This walk
 * over the raw bytes runs first and allocates nothing: every item must be complete, every count
 * must fit in the bytes left (each item takes at least one), nesting stays within max_depth,
 * ext types and the unused byte 0xc1 are refused, and nothing may follow the root. After it,
 * what msgpack-c allocates is bounded by a small multiple of the input size. */
static uint64_t be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static int prescan(const unsigned char *p, size_t len, size_t max_depth)
{
	uint64_t pending[MAX_DEPTH]; /* items still to read in each open container */
	size_t depth = 0, pos = 0;

	assert(max_depth <= MAX_DEPTH);
	if (len == 0)
		return -EINVAL;
	for (;;) {
		if (pos >= len)
			return -EINVAL;
		unsigned char c = p[pos++];
		size_t left = len - pos;
		size_t lenbytes = 0; /* size of a length prefix that follows */
		uint64_t skip = 0;   /* payload bytes to skip */
		uint64_t items = 0;  /* items in a container */
		bool container = false;

		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
			/* fixint, nil, bool */
		} else if (c <= 0x8f) {
			container = true;
			items = 2 * (uint64_t)(c & 0x0f);
		} else if (c <= 0x9f) {
			container = true;
			items = c & 0x0f;
		} else if (c <= 0xbf) {
			skip = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4: /* bin 8/16/32 */
			case 0xd9: /* str 8/16/32 */
				lenbytes = 1;
				break;
			case 0xc5:
			case 0xda:
				lenbytes = 2;
				break;
			case 0xc6:
			case 0xdb:
				lenbytes = 4;
				break;
			case 0xcc: /* uint8, int8 */
			case 0xd0:
				skip = 1;
				break;
			case 0xcd:
			case 0xd1:
				skip = 2;
				break;
			case 0xca: /* float32 */
			case 0xce:
			case 0xd2:
				skip = 4;
				break;
			case 0xcb: /* float64 */
			case 0xcf:
			case 0xd3:
				skip = 8;
				break;
			case 0xdc: /* array 16/32 */
			case 0xdd:
			case 0xde: /* map 16/32 */
			case 0xdf: {
				size_t n = (c == 0xdc || c == 0xde) ? 2 : 4;
				if (left < n)
					return -EINVAL;
				items = be(p + pos, n);
				if (c >= 0xde)
					items *= 2;
				pos += n;
				left -= n;
				container = true;
				break;
			}
			default: /* 0xc1, ext 8/16/32, fixext 1..16 */
				return -EINVAL;
			}
		}
		if (lenbytes) {
			if (left < lenbytes)
				return -EINVAL;
			skip = be(p + pos, lenbytes);
			pos += lenbytes;
			left -= lenbytes;
		}
		if (skip > left)
			return -EINVAL;
		pos += (size_t)skip;

		/* This item is done as far as its parent is concerned. */
		if (depth > 0)
			pending[depth - 1]--;
		if (container) {
			if (items > left)
				return -EINVAL;
			if (depth + 1 > max_depth)
				return -E2BIG;
			if (items > 0)
				pending[depth++] = items;
		}
		while (depth > 0 && pending[depth - 1] == 0)
			depth--;
		if (depth == 0)
			return pos == len ? 0 : -EINVAL;
	}
}

static int convert(struct laurel_msg *m, struct laurel_value *v, const msgpack_object *o);

static int str_cmp(const struct laurel_str *x, const struct laurel_str *y)
{
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->ptr, y->ptr, x->len);
}

static int cmp_key(const void *a, const void *b)
{
	return str_cmp(*(const struct laurel_str *const *)a, *(const struct laurel_str *const *)b);
}

/* Python dicts cannot hold the same key twice and peers never send it; a map that does is
 * refused rather than guessed at, so no two parts of laurel can read it differently. Sorting
 * keeps this O(n log n) whatever the keys. */
static bool has_duplicate_keys(const struct laurel_value *map)
{
	size_t n = map->u.map.len;
	const struct laurel_entry *e = map->u.map.items;
	if (n <= 16) {
		for (size_t i = 1; i < n; i++)
			for (size_t j = 0; j < i; j++)
				if (str_cmp(&e[i].key, &e[j].key) == 0)
					return true;
		return false;
	}
	const struct laurel_str **keys = xmalloc(n * sizeof(*keys));
	for (size_t i = 0; i < n; i++)
		keys[i] = &e[i].key;
	qsort(keys, n, sizeof(*keys), cmp_key);
	bool dup = false;
	for (size_t i = 1; i < n && !dup; i++)
		dup = str_cmp(keys[i - 1], keys[i]) == 0;
	free(keys);
	return dup;
}

static int convert_map(struct laurel_msg *m, struct laurel_value *v, const msgpack_object_map *o)
{
	/* Filled in place rather than with laurel_map_put, whose key lookup would make decoding
	 * quadratic in the number of keys. */
	laurel_value_set_map(m, v, o->size);
	for (uint32_t i = 0; i < o->size; i++) {
		const msgpack_object *k = &o->ptr[i].key;
		if (k->type != MSGPACK_OBJECT_STR)
			return -EINVAL;
		struct laurel_entry *e = &v->u.map.items[i];
		struct laurel_value key;
		laurel_value_set_text(m, &key, k->via.str.ptr, k->via.str.size);
		e->key = key.u.s;
		int r = convert(m, &e->value, &o->ptr[i].val);
		if (r < 0)
			return r;
		v->u.map.len = i + 1;
	}
	return has_duplicate_keys(v) ? -EINVAL : 0;
}

static int convert(struct laurel_msg *m, struct laurel_value *v, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		laurel_value_set_nil(v);
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		laurel_value_set_bool(v, o->via.boolean);
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		/* A uint64 above INT64_MAX has no place in the value model. */
		if (o->via.u64 > INT64_MAX)
			return -EINVAL;
		laurel_value_set_int(v, (int64_t)o->via.u64);
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		laurel_value_set_int(v, o->via.i64);
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		laurel_value_set_double(v, o->via.f64);
		return 0;
	case MSGPACK_OBJECT_STR:
		laurel_value_set_text(m, v, o->via.str.ptr, o->via.str.size);
		return 0;
	case MSGPACK_OBJECT_BIN:
		laurel_value_set_bytes(m, v, o->via.bin.ptr, o->via.bin.size);
		return 0;
	case MSGPACK_OBJECT_ARRAY:
		laurel_value_set_list(m, v, o->via.array.size);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			int r = convert(m, laurel_list_push(m, v), &o->via.array.ptr[i]);
			if (r < 0)
				return r;
		}
		return 0;
	case MSGPACK_OBJECT_MAP:
		return convert_map(m, v, &o->via.map);
	case MSGPACK_OBJECT_EXT:
		break;
	}
	return -EINVAL;
}

int laurel_msg_decode(const void *data, size_t len, const struct laurel_decode_limits *limits,
		      struct laurel_msg **out)
{
	size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES;
	size_t max_depth = limits && limits->max_depth ? limits->max_depth : DEFAULT_MAX_DEPTH;
	if (max_depth > MAX_DEPTH)
		max_depth = MAX_DEPTH;
	if (len > max_bytes)
		return -E2BIG;
	const unsigned char *p = data;
	if (len == 0 || !((p[0] >= 0x80 && p[0] <= 0x8f) || p[0] == 0xde || p[0] == 0xdf))
		return -EINVAL;
	int r = prescan(p, len, max_depth);
	if (r < 0)
		return r;

	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	msgpack_unpack_return ret = msgpack_unpack_next(&u, data, len, &off);
	if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
		fprintf(stderr, "laurel: out of memory decoding a %zu-byte message\n", len);
		abort();
	}
	struct laurel_msg *m = NULL;
	if ((ret != MSGPACK_UNPACK_SUCCESS && ret != MSGPACK_UNPACK_EXTRA_BYTES) || off != len ||
	    u.data.type != MSGPACK_OBJECT_MAP) {
		r = -EINVAL;
		goto fail;
	}
	m = laurel_msg_new();
	r = convert_map(m, laurel_msg_root(m), &u.data.via.map);
	if (r < 0)
		goto fail;
	msgpack_unpacked_destroy(&u);
	*out = m;
	return 0;

fail:
	laurel_msg_free(m);
	msgpack_unpacked_destroy(&u);
	return r;
}
