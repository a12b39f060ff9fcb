#include "laurel/message.h"
#include "common/util.h"

#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every message owns a chunked bump allocator. Nothing in a message is freed on its own: a
 * container that grows gets a new array and the old one is abandoned, which is cheap because
 * messages are short-lived and mostly built once. */

#define FIRST_BLOCK 4096
#define MAX_BLOCK (1024 * 1024)
#define ALIGN alignof(max_align_t)

struct block {
	struct block *next;
	size_t used, cap;
	alignas(max_align_t) unsigned char data[];
};

struct laurel_msg {
	struct laurel_value root;
	struct block *blocks; /* the head is the one being filled */
	size_t next_cap;
};

static _Noreturn void too_big(void)
{
	fprintf(stderr, "laurel: message allocation size overflows\n");
	abort();
}

static struct block *block_new(size_t cap)
{
	if (cap > SIZE_MAX - sizeof(struct block))
		too_big();
	struct block *b = xmalloc(sizeof(*b) + cap);
	b->next = NULL;
	b->used = 0;
	b->cap = cap;
	return b;
}

static void *alloc(struct laurel_msg *m, size_t n)
{
	if (n > SIZE_MAX - ALIGN)
		too_big();
	n = (n + ALIGN - 1) & ~(ALIGN - 1);
	struct block *head = m->blocks;
	if (head->cap - head->used >= n) {
		void *p = head->data + head->used;
		head->used += n;
		return p;
	}
	if (n > m->next_cap / 4) {
		/* Big allocations get a block of their own behind the head, so the space left
		 * in the head is still used. */
		struct block *b = block_new(n);
		b->used = n;
		b->next = head->next;
		head->next = b;
		return b->data;
	}
	struct block *b = block_new(m->next_cap);
	if (m->next_cap < MAX_BLOCK)
		m->next_cap *= 2;
	b->next = head;
	m->blocks = b;
	b->used = n;
	return b->data;
}

static void *alloc_array(struct laurel_msg *m, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		too_big();
	return alloc(m, n * size);
}

static struct laurel_str copy_str(struct laurel_msg *m, const void *p, size_t len)
{
	if (len == SIZE_MAX)
		too_big();
	char *s = alloc(m, len + 1);
	if (len)
		memcpy(s, p, len);
	s[len] = '\0';
	return (struct laurel_str){.ptr = s, .len = len};
}

struct laurel_msg *laurel_msg_new(void)
{
	struct block *b = block_new(FIRST_BLOCK);
	struct laurel_msg *m = (struct laurel_msg *)b->data;
	b->used = (sizeof(*m) + ALIGN - 1) & ~(ALIGN - 1);
	m->blocks = b;
	m->next_cap = FIRST_BLOCK * 2;
	m->root.type = LAUREL_MAP;
	m->root.u.map.items = NULL;
	m->root.u.map.len = 0;
	m->root.u.map.cap = 0;
	return m;
}

void laurel_msg_free(struct laurel_msg *m)
{
	if (!m)
		return;
	/* m itself lives in one of the blocks. */
	struct block *b = m->blocks;
	while (b) {
		struct block *next = b->next;
		free(b);
		b = next;
	}
}

struct laurel_msg *laurel_msg_clone(const struct laurel_msg *m)
{
	struct laurel_msg *c = laurel_msg_new();
	laurel_value_copy(c, &c->root, &m->root);
	return c;
}

struct laurel_value *laurel_msg_root(struct laurel_msg *m)
{
	return &m->root;
}

const struct laurel_value *laurel_msg_croot(const struct laurel_msg *m)
{
	return &m->root;
}

static bool key_is(const struct laurel_str *k, const char *key, size_t keylen)
{
	return k->len == keylen && (keylen == 0 || memcmp(k->ptr, key, keylen) == 0);
}

static struct laurel_entry *find(const struct laurel_value *map, const char *key, size_t keylen)
{
	for (size_t i = 0; i < map->u.map.len; i++)
		if (key_is(&map->u.map.items[i].key, key, keylen))
			return &map->u.map.items[i];
	return NULL;
}

struct laurel_value *laurel_map_putn(struct laurel_msg *m, struct laurel_value *map,
				     const char *key, size_t keylen)
{
	assert(map->type == LAUREL_MAP);
	struct laurel_entry *e = find(map, key, keylen);
	if (e) {
		e->value.type = LAUREL_NIL;
		return &e->value;
	}
	if (map->u.map.len == map->u.map.cap) {
		size_t cap = map->u.map.cap ? map->u.map.cap * 2 : 4;
		struct laurel_entry *items = alloc_array(m, cap, sizeof(*items));
		if (map->u.map.len)
			memcpy(items, map->u.map.items, map->u.map.len * sizeof(*items));
		map->u.map.items = items;
		map->u.map.cap = cap;
	}
	e = &map->u.map.items[map->u.map.len++];
	/* The key is copied before the entry is used, in case it points into this map. */
	e->key = copy_str(m, key, keylen);
	e->value.type = LAUREL_NIL;
	return &e->value;
}

struct laurel_value *laurel_map_put(struct laurel_msg *m, struct laurel_value *map, const char *key)
{
	return laurel_map_putn(m, map, key, strlen(key));
}

struct laurel_value *laurel_list_push(struct laurel_msg *m, struct laurel_value *list)
{
	assert(list->type == LAUREL_LIST);
	if (list->u.list.len == list->u.list.cap) {
		size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
		struct laurel_value *items = alloc_array(m, cap, sizeof(*items));
		if (list->u.list.len)
			memcpy(items, list->u.list.items, list->u.list.len * sizeof(*items));
		list->u.list.items = items;
		list->u.list.cap = cap;
	}
	struct laurel_value *v = &list->u.list.items[list->u.list.len++];
	v->type = LAUREL_NIL;
	return v;
}

bool laurel_map_remove(struct laurel_value *map, const char *key)
{
	if (map->type != LAUREL_MAP)
		return false;
	struct laurel_entry *e = find(map, key, strlen(key));
	if (!e)
		return false;
	size_t i = (size_t)(e - map->u.map.items);
	memmove(e, e + 1, (map->u.map.len - i - 1) * sizeof(*e));
	map->u.map.len--;
	return true;
}

void laurel_value_set_nil(struct laurel_value *v)
{
	v->type = LAUREL_NIL;
}

void laurel_value_set_bool(struct laurel_value *v, bool b)
{
	v->type = LAUREL_BOOL;
	v->u.b = b;
}

void laurel_value_set_int(struct laurel_value *v, int64_t i)
{
	v->type = LAUREL_INT;
	v->u.i = i;
}

void laurel_value_set_double(struct laurel_value *v, double d)
{
	v->type = LAUREL_DOUBLE;
	v->u.d = d;
}

void laurel_value_set_text(struct laurel_msg *m, struct laurel_value *v, const char *s, size_t len)
{
	v->u.s = copy_str(m, s, len);
	v->type = LAUREL_TEXT;
}

void laurel_value_set_bytes(struct laurel_msg *m, struct laurel_value *v, const void *p, size_t len)
{
	v->u.s = copy_str(m, p, len);
	v->type = LAUREL_BYTES;
}

void laurel_value_set_list(struct laurel_msg *m, struct laurel_value *v, size_t hint)
{
	v->u.list.items = hint ? alloc_array(m, hint, sizeof(struct laurel_value)) : NULL;
	v->u.list.len = 0;
	v->u.list.cap = hint;
	v->type = LAUREL_LIST;
}

void laurel_value_set_map(struct laurel_msg *m, struct laurel_value *v, size_t hint)
{
	v->u.map.items = hint ? alloc_array(m, hint, sizeof(struct laurel_entry)) : NULL;
	v->u.map.len = 0;
	v->u.map.cap = hint;
	v->type = LAUREL_MAP;
}

void laurel_value_copy(struct laurel_msg *m, struct laurel_value *v, const struct laurel_value *src)
{
	/* Built aside and assigned last, so src may be v or lie inside it. */
	struct laurel_value t;
	t.type = src->type;
	switch (src->type) {
	case LAUREL_TEXT:
	case LAUREL_BYTES:
		t.u.s = copy_str(m, src->u.s.ptr, src->u.s.len);
		break;
	case LAUREL_LIST: {
		size_t n = src->u.list.len;
		t.u.list.items = n ? alloc_array(m, n, sizeof(struct laurel_value)) : NULL;
		t.u.list.len = n;
		t.u.list.cap = n;
		for (size_t i = 0; i < n; i++)
			laurel_value_copy(m, &t.u.list.items[i], &src->u.list.items[i]);
		break;
	}
	case LAUREL_MAP: {
		size_t n = src->u.map.len;
		t.u.map.items = n ? alloc_array(m, n, sizeof(struct laurel_entry)) : NULL;
		t.u.map.len = n;
		t.u.map.cap = n;
		for (size_t i = 0; i < n; i++) {
			const struct laurel_entry *se = &src->u.map.items[i];
			t.u.map.items[i].key = copy_str(m, se->key.ptr, se->key.len);
			laurel_value_copy(m, &t.u.map.items[i].value, &se->value);
		}
		break;
	}
	default:
		t.u = src->u;
		break;
	}
	*v = t;
}

void laurel_msg_set_text(struct laurel_msg *m, const char *key, const char *s)
{
	laurel_msg_set_textn(m, key, s, strlen(s));
}

void laurel_msg_set_textn(struct laurel_msg *m, const char *key, const char *s, size_t len)
{
	laurel_value_set_text(m, laurel_map_put(m, &m->root, key), s, len);
}

void laurel_msg_set_bytes(struct laurel_msg *m, const char *key, const void *p, size_t len)
{
	laurel_value_set_bytes(m, laurel_map_put(m, &m->root, key), p, len);
}

void laurel_msg_set_int(struct laurel_msg *m, const char *key, int64_t i)
{
	laurel_value_set_int(laurel_map_put(m, &m->root, key), i);
}

void laurel_msg_set_bool(struct laurel_msg *m, const char *key, bool b)
{
	laurel_value_set_bool(laurel_map_put(m, &m->root, key), b);
}

void laurel_msg_set_double(struct laurel_msg *m, const char *key, double d)
{
	laurel_value_set_double(laurel_map_put(m, &m->root, key), d);
}

void laurel_msg_set_nil(struct laurel_msg *m, const char *key)
{
	laurel_map_put(m, &m->root, key);
}

const struct laurel_value *laurel_map_get(const struct laurel_value *map, const char *key)
{
	if (!map || map->type != LAUREL_MAP)
		return NULL;
	const struct laurel_entry *e = find(map, key, strlen(key));
	return e ? &e->value : NULL;
}

const struct laurel_value *laurel_msg_get(const struct laurel_msg *m, const char *key)
{
	return laurel_map_get(&m->root, key);
}

static const struct laurel_str *get_str(const struct laurel_value *map, const char *key,
					enum laurel_type type, size_t *len)
{
	const struct laurel_value *v = laurel_map_get(map, key);
	if (!v || v->type != type)
		return NULL;
	if (len)
		*len = v->u.s.len;
	return &v->u.s;
}

const char *laurel_map_get_text(const struct laurel_value *map, const char *key, size_t *len)
{
	const struct laurel_str *s = get_str(map, key, LAUREL_TEXT, len);
	return s ? s->ptr : NULL;
}

const void *laurel_map_get_bytes(const struct laurel_value *map, const char *key, size_t *len)
{
	const struct laurel_str *s = get_str(map, key, LAUREL_BYTES, len);
	return s ? s->ptr : NULL;
}

static int get_typed(const struct laurel_value *map, const char *key, enum laurel_type type,
		     const struct laurel_value **out)
{
	const struct laurel_value *v = laurel_map_get(map, key);
	if (!v)
		return -ENOENT;
	if (v->type != type)
		return -EINVAL;
	*out = v;
	return 0;
}

int laurel_map_get_int(const struct laurel_value *map, const char *key, int64_t *out)
{
	const struct laurel_value *v;
	int r = get_typed(map, key, LAUREL_INT, &v);
	if (r == 0)
		*out = v->u.i;
	return r;
}

int laurel_map_get_bool(const struct laurel_value *map, const char *key, bool *out)
{
	const struct laurel_value *v;
	int r = get_typed(map, key, LAUREL_BOOL, &v);
	if (r == 0)
		*out = v->u.b;
	return r;
}

int laurel_map_get_double(const struct laurel_value *map, const char *key, double *out)
{
	const struct laurel_value *v;
	int r = get_typed(map, key, LAUREL_DOUBLE, &v);
	if (r == 0)
		*out = v->u.d;
	return r;
}

const char *laurel_msg_get_text(const struct laurel_msg *m, const char *key, size_t *len)
{
	return laurel_map_get_text(&m->root, key, len);
}

const void *laurel_msg_get_bytes(const struct laurel_msg *m, const char *key, size_t *len)
{
	return laurel_map_get_bytes(&m->root, key, len);
}

int laurel_msg_get_int(const struct laurel_msg *m, const char *key, int64_t *out)
{
	return laurel_map_get_int(&m->root, key, out);
}

int laurel_msg_get_bool(const struct laurel_msg *m, const char *key, bool *out)
{
	return laurel_map_get_bool(&m->root, key, out);
}

int laurel_msg_get_double(const struct laurel_msg *m, const char *key, double *out)
{
	return laurel_map_get_double(&m->root, key, out);
}

const char *laurel_type_name(enum laurel_type t)
{
	switch (t) {
	case LAUREL_NIL:
		return "nil";
	case LAUREL_BOOL:
		return "bool";
	case LAUREL_INT:
		return "int";
	case LAUREL_DOUBLE:
		return "double";
	case LAUREL_TEXT:
		return "text";
	case LAUREL_BYTES:
		return "bytes";
	case LAUREL_LIST:
		return "list";
	case LAUREL_MAP:
		return "map";
	}
	return "unknown";
}

static bool str_equal(const struct laurel_str *a, const struct laurel_str *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

bool laurel_value_equal(const struct laurel_value *a, const struct laurel_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case LAUREL_NIL:
		return true;
	case LAUREL_BOOL:
		return a->u.b == b->u.b;
	case LAUREL_INT:
		return a->u.i == b->u.i;
	case LAUREL_DOUBLE:
		/* Bit for bit: a NaN equals itself and -0.0 differs from 0.0, so that equal
		 * values encode to equal bytes. */
		return memcmp(&a->u.d, &b->u.d, sizeof(double)) == 0;
	case LAUREL_TEXT:
	case LAUREL_BYTES:
		return str_equal(&a->u.s, &b->u.s);
	case LAUREL_LIST:
		if (a->u.list.len != b->u.list.len)
			return false;
		for (size_t i = 0; i < a->u.list.len; i++)
			if (!laurel_value_equal(&a->u.list.items[i], &b->u.list.items[i]))
				return false;
		return true;
	case LAUREL_MAP:
		if (a->u.map.len != b->u.map.len)
			return false;
		for (size_t i = 0; i < a->u.map.len; i++) {
			const struct laurel_entry *x = &a->u.map.items[i], *y = &b->u.map.items[i];
			if (!str_equal(&x->key, &y->key) ||
			    !laurel_value_equal(&x->value, &y->value))
				return false;
		}
		return true;
	}
	return false;
}
