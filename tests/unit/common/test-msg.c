#include "laurel/message.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const char *key_at(const struct laurel_value *map, size_t i)
{
	return map->u.map.items[i].key.ptr;
}

static void test_scalars(void)
{
	struct laurel_msg *m = laurel_msg_new();
	const struct laurel_value *root = laurel_msg_croot(m);
	CHECK_EQ(root->type, LAUREL_MAP);
	CHECK_EQ(root->u.map.len, 0);
	CHECK(laurel_msg_root(m) == root);

	laurel_msg_set_text(m, "t", "hello");
	laurel_msg_set_textn(m, "tn", "a\0b", 3);
	laurel_msg_set_bytes(m, "b", "\x00\xff\x01", 3);
	laurel_msg_set_bytes(m, "empty", NULL, 0);
	laurel_msg_set_int(m, "i", -42);
	laurel_msg_set_int(m, "imax", INT64_MAX);
	laurel_msg_set_int(m, "imin", INT64_MIN);
	laurel_msg_set_bool(m, "yes", true);
	laurel_msg_set_bool(m, "no", false);
	laurel_msg_set_double(m, "d", 2.5);
	laurel_msg_set_nil(m, "n");
	CHECK_EQ(root->u.map.len, 11);

	size_t len = 99;
	CHECK_STR(laurel_msg_get_text(m, "t", &len), "hello");
	CHECK_EQ(len, 5);
	const char *tn = laurel_msg_get_text(m, "tn", &len);
	CHECK_MEM(tn, len, "a\0b", 3);
	CHECK_EQ(tn[3], '\0');
	const unsigned char *b = laurel_msg_get_bytes(m, "b", &len);
	CHECK_MEM(b, len, "\x00\xff\x01", 3);
	CHECK_EQ(b[3], 0);
	const char *e = laurel_msg_get_bytes(m, "empty", &len);
	CHECK(e != NULL);
	CHECK_EQ(len, 0);
	CHECK_STR(e, "");
	CHECK_STR(laurel_msg_get_text(m, "t", NULL), "hello");

	int64_t i = 0;
	CHECK_EQ(laurel_msg_get_int(m, "i", &i), 0);
	CHECK_EQ(i, -42);
	CHECK_EQ(laurel_msg_get_int(m, "imax", &i), 0);
	CHECK(i == INT64_MAX);
	CHECK_EQ(laurel_msg_get_int(m, "imin", &i), 0);
	CHECK(i == INT64_MIN);
	bool yes = false, no = true;
	CHECK_EQ(laurel_msg_get_bool(m, "yes", &yes), 0);
	CHECK_EQ(laurel_msg_get_bool(m, "no", &no), 0);
	CHECK_EQ(yes, true);
	CHECK_EQ(no, false);
	double d = 0;
	CHECK_EQ(laurel_msg_get_double(m, "d", &d), 0);
	CHECK(d == 2.5);
	const struct laurel_value *n = laurel_msg_get(m, "n");
	CHECK(n != NULL);
	CHECK_EQ(n->type, LAUREL_NIL);

	/* Typed getters: missing and wrong type, outputs untouched. */
	i = 7;
	CHECK_EQ(laurel_msg_get_int(m, "nope", &i), -ENOENT);
	CHECK_EQ(laurel_msg_get_int(m, "t", &i), -EINVAL);
	CHECK_EQ(laurel_msg_get_int(m, "d", &i), -EINVAL);
	CHECK_EQ(i, 7);
	CHECK_EQ(laurel_msg_get_bool(m, "nope", &yes), -ENOENT);
	CHECK_EQ(laurel_msg_get_bool(m, "i", &yes), -EINVAL);
	CHECK_EQ(laurel_msg_get_double(m, "nope", &d), -ENOENT);
	CHECK_EQ(laurel_msg_get_double(m, "i", &d), -EINVAL);
	CHECK(d == 2.5);
	len = 123;
	CHECK(laurel_msg_get_text(m, "b", &len) == NULL);
	CHECK(laurel_msg_get_text(m, "nope", &len) == NULL);
	CHECK(laurel_msg_get_bytes(m, "t", &len) == NULL);
	CHECK(laurel_msg_get_bytes(m, "n", NULL) == NULL);
	CHECK_EQ(len, 123);
	CHECK(laurel_msg_get(m, "nope") == NULL);
	CHECK(laurel_map_get(NULL, "t") == NULL);
	CHECK(laurel_map_get(laurel_msg_get(m, "i"), "t") == NULL);

	CHECK_STR(laurel_type_name(LAUREL_NIL), "nil");
	CHECK_STR(laurel_type_name(LAUREL_BOOL), "bool");
	CHECK_STR(laurel_type_name(LAUREL_INT), "int");
	CHECK_STR(laurel_type_name(LAUREL_DOUBLE), "double");
	CHECK_STR(laurel_type_name(LAUREL_TEXT), "text");
	CHECK_STR(laurel_type_name(LAUREL_BYTES), "bytes");
	CHECK_STR(laurel_type_name(LAUREL_LIST), "list");
	CHECK_STR(laurel_type_name(LAUREL_MAP), "map");

	laurel_msg_free(m);
	laurel_msg_free(NULL);
}

static void test_nested(void)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);

	/* headers: a list of [name, value] byte pairs */
	struct laurel_value *headers = laurel_map_put(m, root, "headers");
	laurel_value_set_list(m, headers, 0);
	static const char *const hv[][2] = {{"host", "x"}, {"accept", "*/*"}, {"a", "1"},
					    {"b", "2"},	   {"c", "3"},	      {"d", "4"}};
	for (size_t k = 0; k < ARRAY_SIZE(hv); k++) {
		struct laurel_value *pair = laurel_list_push(m, headers);
		CHECK_EQ(pair->type, LAUREL_NIL);
		laurel_value_set_list(m, pair, 2);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hv[k][0], strlen(hv[k][0]));
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hv[k][1], strlen(hv[k][1]));
		/* A third push grows past the hint. */
		if (k == 0)
			laurel_value_set_int(laurel_list_push(m, pair), 3);
	}
	/* content: {inner: {x: [1, 2.0, nil, true]}} */
	struct laurel_value *content = laurel_map_put(m, root, "content");
	laurel_value_set_map(m, content, 1);
	struct laurel_value *inner = laurel_map_put(m, content, "inner");
	laurel_value_set_map(m, inner, 0);
	struct laurel_value *x = laurel_map_put(m, inner, "x");
	laurel_value_set_list(m, x, 0);
	laurel_value_set_int(laurel_list_push(m, x), 1);
	laurel_value_set_double(laurel_list_push(m, x), 2.0);
	laurel_list_push(m, x);
	laurel_value_set_bool(laurel_list_push(m, x), true);
	laurel_value_set_map(m, laurel_map_put(m, content, "second"), 0);
	laurel_value_set_map(m, laurel_map_put(m, content, "third"), 0);

	const struct laurel_value *h = laurel_msg_get(m, "headers");
	CHECK_EQ(h->type, LAUREL_LIST);
	CHECK_EQ(h->u.list.len, ARRAY_SIZE(hv));
	for (size_t k = 0; k < h->u.list.len; k++) {
		const struct laurel_value *pair = &h->u.list.items[k];
		CHECK_EQ(pair->type, LAUREL_LIST);
		CHECK_EQ(pair->u.list.len, k == 0 ? 3 : 2);
		CHECK_EQ(pair->u.list.items[0].type, LAUREL_BYTES);
		CHECK_STR(pair->u.list.items[0].u.s.ptr, hv[k][0]);
		CHECK_STR(pair->u.list.items[1].u.s.ptr, hv[k][1]);
	}
	CHECK_EQ(h->u.list.items[0].u.list.items[2].u.i, 3);

	const struct laurel_value *c = laurel_msg_get(m, "content");
	CHECK_EQ(c->type, LAUREL_MAP);
	CHECK_EQ(c->u.map.len, 3);
	CHECK_STR(key_at(c, 0), "inner");
	CHECK_STR(key_at(c, 1), "second");
	CHECK_STR(key_at(c, 2), "third");
	const struct laurel_value *xl = laurel_map_get(laurel_map_get(c, "inner"), "x");
	CHECK(xl != NULL);
	CHECK_EQ(xl->u.list.len, 4);
	CHECK_EQ(xl->u.list.items[0].type, LAUREL_INT);
	CHECK_EQ(xl->u.list.items[1].type, LAUREL_DOUBLE);
	CHECK_EQ(xl->u.list.items[2].type, LAUREL_NIL);
	CHECK_EQ(xl->u.list.items[3].type, LAUREL_BOOL);
	CHECK(xl->u.list.items[1].u.d == 2.0);
	CHECK(laurel_map_get(c, "x") == NULL);
	laurel_msg_free(m);
}

static void test_put_remove(void)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	laurel_msg_set_text(m, "a", "1");
	laurel_msg_set_text(m, "b", "2");
	laurel_msg_set_text(m, "c", "3");
	laurel_msg_set_text(m, "d", "4");

	/* put on an existing key: same slot, reset to nil, position kept. */
	const struct laurel_value *before = laurel_msg_get(m, "b");
	struct laurel_value *slot = laurel_map_put(m, root, "b");
	CHECK(slot == before);
	CHECK_EQ(slot->type, LAUREL_NIL);
	laurel_value_set_int(slot, 22);
	laurel_msg_set_int(m, "c", 33);
	CHECK_EQ(root->u.map.len, 4);
	CHECK_STR(key_at(root, 0), "a");
	CHECK_STR(key_at(root, 1), "b");
	CHECK_STR(key_at(root, 2), "c");
	CHECK_STR(key_at(root, 3), "d");
	int64_t i = 0;
	CHECK_EQ(laurel_msg_get_int(m, "b", &i), 0);
	CHECK_EQ(i, 22);
	CHECK_EQ(laurel_msg_get_int(m, "c", &i), 0);
	CHECK_EQ(i, 33);

	/* putn with a key that is not NUL-terminated, and a key with a NUL inside. */
	laurel_value_set_int(laurel_map_putn(m, root, "exxx", 1), 5);
	CHECK_EQ(laurel_msg_get_int(m, "e", &i), 0);
	CHECK_EQ(i, 5);
	laurel_value_set_int(laurel_map_putn(m, root, "f\0g", 3), 6);
	CHECK_EQ(root->u.map.len, 6);
	CHECK_EQ(root->u.map.items[5].key.len, 3);
	CHECK(laurel_msg_get(m, "f") == NULL);

	CHECK(laurel_map_remove(root, "b"));
	CHECK(!laurel_map_remove(root, "b"));
	CHECK(!laurel_map_remove(root, "zz"));
	CHECK_EQ(root->u.map.len, 5);
	CHECK_STR(key_at(root, 0), "a");
	CHECK_STR(key_at(root, 1), "c");
	CHECK_STR(key_at(root, 2), "d");
	CHECK_STR(key_at(root, 3), "e");
	CHECK(laurel_map_remove(root, "a"));
	CHECK_STR(key_at(root, 0), "c");
	CHECK(laurel_map_remove(root, "e"));
	CHECK_EQ(root->u.map.len, 3);
	CHECK_STR(key_at(root, 0), "c");
	CHECK_STR(key_at(root, 1), "d");
	CHECK_EQ(root->u.map.items[2].key.len, 3);
	CHECK(!laurel_map_remove((struct laurel_value *)laurel_msg_get(m, "d"), "x"));

	/* A removed key comes back at the end. */
	laurel_msg_set_bool(m, "a", true);
	CHECK_EQ(root->u.map.len, 4);
	CHECK_STR(key_at(root, 3), "a");

	/* Overwriting a container with a scalar and back. */
	struct laurel_value *l = laurel_map_put(m, root, "c");
	laurel_value_set_list(m, l, 0);
	laurel_value_set_text(m, laurel_list_push(m, l), "x", 1);
	laurel_msg_set_double(m, "c", 1.5);
	double d = 0;
	CHECK_EQ(laurel_msg_get_double(m, "c", &d), 0);
	CHECK(d == 1.5);
	laurel_msg_set_nil(m, "c");
	CHECK_EQ(laurel_msg_get(m, "c")->type, LAUREL_NIL);
	CHECK_STR(key_at(root, 0), "c");
	laurel_msg_free(m);
}

static struct laurel_msg *sample(void)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	laurel_msg_set_text(m, "reply_channel", "daphne.response.X!y");
	laurel_msg_set_bytes(m, "body", "abc", 3);
	laurel_msg_set_int(m, "order", 3);
	laurel_msg_set_double(m, "f", -0.5);
	laurel_msg_set_bool(m, "more", false);
	laurel_msg_set_nil(m, "nil");
	struct laurel_value *client = laurel_map_put(m, root, "client");
	laurel_value_set_list(m, client, 2);
	laurel_value_set_text(m, laurel_list_push(m, client), "127.0.0.1", 9);
	laurel_value_set_int(laurel_list_push(m, client), 57604);
	struct laurel_value *sub = laurel_map_put(m, root, "sub");
	laurel_value_set_map(m, sub, 0);
	laurel_value_set_text(m, laurel_map_put(m, sub, "k"), "v", 1);
	return m;
}

static void test_clone_equal(void)
{
	struct laurel_msg *a = sample(), *b = sample();
	const struct laurel_value *ra = laurel_msg_croot(a), *rb = laurel_msg_croot(b);
	CHECK(laurel_value_equal(ra, rb));

	struct laurel_msg *c = laurel_msg_clone(a);
	CHECK(laurel_value_equal(laurel_msg_croot(c), ra));
	/* The clone is independent of the original. */
	laurel_msg_free(a);
	CHECK(laurel_value_equal(laurel_msg_croot(c), rb));
	CHECK_STR(laurel_msg_get_text(c, "reply_channel", NULL), "daphne.response.X!y");

	laurel_msg_set_int(c, "order", 4);
	CHECK(!laurel_value_equal(laurel_msg_croot(c), rb));
	laurel_msg_set_int(c, "order", 3);
	CHECK(laurel_value_equal(laurel_msg_croot(c), rb));

	/* Order matters for maps. */
	struct laurel_msg *d = laurel_msg_clone(c);
	struct laurel_value *rd = laurel_msg_root(d);
	laurel_map_remove(rd, "reply_channel");
	CHECK(!laurel_value_equal(rd, rb));
	laurel_msg_set_text(d, "reply_channel", "daphne.response.X!y");
	CHECK_EQ(rd->u.map.len, rb->u.map.len);
	CHECK(!laurel_value_equal(rd, rb));

	/* Nested difference. */
	struct laurel_msg *e = laurel_msg_clone(b);
	struct laurel_value *sub = (struct laurel_value *)laurel_msg_get(e, "sub");
	laurel_value_set_text(e, laurel_map_put(e, sub, "k"), "w", 1);
	CHECK(!laurel_value_equal(laurel_msg_croot(e), rb));
	laurel_value_set_text(e, laurel_map_put(e, sub, "k"), "v", 1);
	CHECK(laurel_value_equal(laurel_msg_croot(e), rb));
	struct laurel_value *client = (struct laurel_value *)laurel_msg_get(e, "client");
	laurel_list_push(e, client);
	CHECK(!laurel_value_equal(laurel_msg_croot(e), rb));

	/* Scalars. */
	struct laurel_value x, y;
	laurel_value_set_text(e, &x, "ab", 2);
	laurel_value_set_bytes(e, &y, "ab", 2);
	CHECK(!laurel_value_equal(&x, &y));
	laurel_value_set_text(e, &y, "ab", 2);
	CHECK(laurel_value_equal(&x, &y));
	laurel_value_set_text(e, &y, "ab\0", 3);
	CHECK(!laurel_value_equal(&x, &y));
	laurel_value_set_int(&x, 1);
	laurel_value_set_double(&y, 1.0);
	CHECK(!laurel_value_equal(&x, &y));
	laurel_value_set_bool(&x, true);
	laurel_value_set_bool(&y, true);
	CHECK(laurel_value_equal(&x, &y));
	laurel_value_set_bool(&y, false);
	CHECK(!laurel_value_equal(&x, &y));
	laurel_value_set_nil(&x);
	laurel_value_set_nil(&y);
	CHECK(laurel_value_equal(&x, &y));
	laurel_value_set_double(&x, NAN);
	laurel_value_set_double(&y, NAN);
	CHECK(laurel_value_equal(&x, &y));
	laurel_value_set_double(&x, 0.0);
	laurel_value_set_double(&y, -0.0);
	CHECK(!laurel_value_equal(&x, &y));
	laurel_value_set_list(e, &x, 0);
	laurel_value_set_map(e, &y, 0);
	CHECK(!laurel_value_equal(&x, &y));

	/* value_copy across messages and within one (source inside the destination). */
	struct laurel_msg *f = laurel_msg_new();
	laurel_value_copy(f, laurel_map_put(f, laurel_msg_root(f), "copy"), rb);
	CHECK(laurel_value_equal(laurel_msg_get(f, "copy"), rb));
	struct laurel_value *cp = (struct laurel_value *)laurel_msg_get(f, "copy");
	laurel_value_copy(f, cp, laurel_map_get(cp, "client"));
	CHECK_EQ(cp->type, LAUREL_LIST);
	CHECK_EQ(cp->u.list.len, 2);
	CHECK_STR(cp->u.list.items[0].u.s.ptr, "127.0.0.1");
	CHECK_EQ(cp->u.list.items[1].u.i, 57604);

	/* Clone of an empty message. */
	struct laurel_msg *g = laurel_msg_new(), *h = laurel_msg_clone(g);
	CHECK(laurel_value_equal(laurel_msg_croot(g), laurel_msg_croot(h)));
	CHECK_EQ(laurel_msg_croot(h)->type, LAUREL_MAP);

	laurel_msg_free(b);
	laurel_msg_free(c);
	laurel_msg_free(d);
	laurel_msg_free(e);
	laurel_msg_free(f);
	laurel_msg_free(g);
	laurel_msg_free(h);
}

static void test_large(void)
{
	struct laurel_msg *m = laurel_msg_new();
	const struct laurel_value *root = laurel_msg_croot(m);
	char key[32];
	for (int k = 0; k < 10000; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		laurel_msg_set_int(m, key, k);
	}
	CHECK_EQ(root->u.map.len, 10000);
	int bad = 0;
	for (int k = 0; k < 10000; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		int64_t v = -1;
		if (laurel_msg_get_int(m, key, &v) != 0 || v != k || strcmp(key_at(root, k), key))
			bad++;
	}
	CHECK_EQ(bad, 0);
	/* Overwrite one in the middle. */
	laurel_msg_set_text(m, "key5000", "five thousand");
	CHECK_STR(key_at(root, 5000), "key5000");
	CHECK_STR(root->u.map.items[5000].value.u.s.ptr, "five thousand");
	CHECK_EQ(root->u.map.len, 10000);

	/* Long strings get blocks of their own; small values still fill the shared ones. */
	size_t n = 3 * 1024 * 1024 + 7;
	char *big = xmalloc(n);
	for (size_t k = 0; k < n; k++)
		big[k] = (char)('a' + k % 26);
	laurel_msg_set_textn(m, "big", big, n);
	laurel_msg_set_bytes(m, "bigb", big, n);
	laurel_msg_set_int(m, "after", 1);
	size_t len = 0;
	const char *t = laurel_msg_get_text(m, "big", &len);
	CHECK_MEM(t, len, big, n);
	CHECK_EQ(t[n], '\0');
	const void *bb = laurel_msg_get_bytes(m, "bigb", &len);
	CHECK_MEM(bb, len, big, n);

	struct laurel_msg *c = laurel_msg_clone(m);
	CHECK(laurel_value_equal(laurel_msg_croot(c), root));
	laurel_msg_free(c);

	/* A list that grows through many doublings. */
	struct laurel_value *l = laurel_map_put(m, laurel_msg_root(m), "list");
	laurel_value_set_list(m, l, 0);
	for (int k = 0; k < 100000; k++)
		laurel_value_set_int(laurel_list_push(m, l), k);
	l = (struct laurel_value *)laurel_msg_get(m, "list");
	CHECK_EQ(l->u.list.len, 100000);
	bad = 0;
	for (int k = 0; k < 100000; k++)
		if (l->u.list.items[k].type != LAUREL_INT || l->u.list.items[k].u.i != k)
			bad++;
	CHECK_EQ(bad, 0);

	free(big);
	laurel_msg_free(m);
}

int main(void)
{
	test_scalars();
	test_nested();
	test_put_remove();
	test_clone_equal();
	test_large();
	return test_done();
}
