/* The value builder (include/laurel/message.h): nested maps and lists, every scalar type, keys
 * given twice, copies of values, the mistakes it keeps (and the calls after them that do
 * nothing), the depth limit, reset, and that a value built stays put while more is built. */
#include "laurel/message.h"
#include "common/buf.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <stdlib.h>

/* A short printed form: {a: 1, b: [t"x", b"y", 1.5, T, F, nil]} (text t"...", bytes b"..."). */
static void repr(struct buf *b, const struct laurel_value *v)
{
	char tmp[64];
	switch (v->type) {
	case LAUREL_NIL:
		buf_append_str(b, "nil");
		break;
	case LAUREL_BOOL:
		buf_append_str(b, v->u.b ? "T" : "F");
		break;
	case LAUREL_INT:
		snprintf(tmp, sizeof(tmp), "%lld", (long long)v->u.i);
		buf_append_str(b, tmp);
		break;
	case LAUREL_DOUBLE:
		snprintf(tmp, sizeof(tmp), "%g", v->u.d);
		buf_append_str(b, tmp);
		break;
	case LAUREL_TEXT:
	case LAUREL_BYTES:
		buf_append_str(b, v->type == LAUREL_TEXT ? "t\"" : "b\"");
		buf_append(b, v->u.s.ptr, v->u.s.len);
		buf_append_str(b, "\"");
		break;
	case LAUREL_LIST:
		buf_append_str(b, "[");
		for (size_t i = 0; i < v->u.list.len; i++) {
			if (i)
				buf_append_str(b, ", ");
			repr(b, &v->u.list.items[i]);
		}
		buf_append_str(b, "]");
		break;
	case LAUREL_MAP:
		buf_append_str(b, "{");
		for (size_t i = 0; i < v->u.map.len; i++) {
			if (i)
				buf_append_str(b, ", ");
			buf_append(b, v->u.map.items[i].key.ptr, v->u.map.items[i].key.len);
			buf_append_str(b, ": ");
			repr(b, &v->u.map.items[i].value);
		}
		buf_append_str(b, "}");
		break;
	}
}

static char printed[4096];

static const char *show(const struct laurel_value *v)
{
	struct buf b;
	buf_init(&b);
	if (v)
		repr(&b, v);
	else
		buf_append_str(&b, "(null)");
	snprintf(printed, sizeof(printed), "%.*s", (int)b.len, b.data ? b.data : "");
	buf_fini(&b);
	return printed;
}

static void nested(void)
{
	struct laurel_builder *b = laurel_builder_new();
	CHECK_EQ(laurel_build_map(b, NULL), 0);
	CHECK_EQ(laurel_build_text(b, "type", "presence"), 0);
	CHECK_EQ(laurel_build_int(b, "count", 3), 0);
	CHECK_EQ(laurel_build_list(b, "members"), 0);
	/* Enough items that the list, and the map holding it, grow and move many times. */
	for (int i = 0; i < 100; i++)
		CHECK_EQ(laurel_build_textf(b, NULL, "m%d", i), 0);
	CHECK_EQ(laurel_build_end(b), 0);
	CHECK_EQ(laurel_build_map(b, "room"), 0);
	CHECK_EQ(laurel_build_textn(b, "name", "lob\0by", 6), 0);
	CHECK_EQ(laurel_build_bool(b, "open", true), 0);
	CHECK_EQ(laurel_build_end(b), 0);
	for (int i = 0; i < 40; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		CHECK_EQ(laurel_build_int(b, key, i), 0);
	}
	CHECK_EQ(laurel_build_end(b), 0);
	const struct laurel_value *v = laurel_build_done(b);
	CHECK(v != NULL);
	CHECK_STR(laurel_build_error(b), "");
	if (v) {
		CHECK_EQ(v->type, LAUREL_MAP);
		CHECK_EQ(v->u.map.len, 44);
		const struct laurel_value *m = laurel_map_get(v, "members");
		CHECK(m && m->type == LAUREL_LIST && m->u.list.len == 100);
		if (m && m->u.list.len == 100) {
			CHECK_STR(m->u.list.items[0].u.s.ptr, "m0");
			CHECK_STR(m->u.list.items[99].u.s.ptr, "m99");
		}
		const struct laurel_value *room = laurel_map_get(v, "room");
		const struct laurel_value *name = room ? laurel_map_get(room, "name") : NULL;
		CHECK(name && name->type == LAUREL_TEXT && name->u.s.len == 6);
		const struct laurel_value *k39 = laurel_map_get(v, "k39");
		CHECK(k39 && k39->type == LAUREL_INT && k39->u.i == 39);
	}
	/* done is idempotent. */
	CHECK(laurel_build_done(b) == v);
	laurel_builder_free(b);
}

static void scalars(void)
{
	struct laurel_builder *b = laurel_builder_new();
	laurel_build_list(b, NULL);
	laurel_build_nil(b, NULL);
	laurel_build_bool(b, NULL, false);
	laurel_build_int(b, NULL, INT64_MIN);
	laurel_build_double(b, NULL, 1.5);
	laurel_build_text(b, NULL, "");
	laurel_build_text(b, NULL, NULL); /* nil */
	laurel_build_bytes(b, NULL, "\x00\xff", 2);
	laurel_build_bytes(b, NULL, NULL, 0);
	laurel_build_list(b, NULL);
	laurel_build_end(b);
	laurel_build_map(b, NULL);
	laurel_build_end(b);
	laurel_build_end(b);
	CHECK_STR(show(laurel_build_done(b)),
		  "[nil, F, -9223372036854775808, 1.5, t\"\", nil, b\"\x00\xff\", b\"\", [], {}]");

	/* A scalar as the top value. */
	laurel_builder_reset(b);
	CHECK_EQ(laurel_build_int(b, NULL, 7), 0);
	CHECK_STR(show(laurel_build_done(b)), "7");

	/* A key given twice keeps its place and takes the last value. */
	laurel_builder_reset(b);
	laurel_build_map(b, NULL);
	laurel_build_int(b, "a", 1);
	laurel_build_int(b, "b", 2);
	laurel_build_list(b, "a");
	laurel_build_int(b, NULL, 3);
	laurel_build_end(b);
	laurel_build_end(b);
	CHECK_STR(show(laurel_build_done(b)), "{a: [3], b: 2}");

	/* A copy of a value from a message, which may then go. */
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "x", "from a message");
	laurel_builder_reset(b);
	laurel_build_map(b, NULL);
	laurel_build_value(b, "copy", laurel_msg_croot(m));
	laurel_build_end(b);
	laurel_msg_free(m);
	CHECK_STR(show(laurel_build_done(b)), "{copy: {x: t\"from a message\"}}");
	laurel_builder_free(b);
	laurel_builder_free(NULL);
}

/* Each mistake: the call fails, later calls do nothing, done is NULL with a reason. */
static void mistake(const char *name, void (*fn)(struct laurel_builder *), const char *reason)
{
	struct laurel_builder *b = laurel_builder_new();
	fn(b);
	/* Everything after the mistake fails too and changes nothing. */
	CHECK_EQ(laurel_build_int(b, NULL, 1), -EINVAL);
	CHECK_EQ(laurel_build_end(b), -EINVAL);
	CHECK(laurel_build_done(b) == NULL);
	if (strstr(laurel_build_error(b), reason) == NULL)
		test_fail(__FILE__, __LINE__, "%s: error \"%s\" does not say \"%s\"", name,
			  laurel_build_error(b), reason);
	test_checks++;
	/* reset forgets it. */
	laurel_builder_reset(b);
	CHECK_STR(laurel_build_error(b), "");
	CHECK_EQ(laurel_build_text(b, NULL, "again"), 0);
	CHECK_STR(show(laurel_build_done(b)), "t\"again\"");
	laurel_builder_free(b);
}

static void no_key_in_map(struct laurel_builder *b)
{
	laurel_build_map(b, NULL);
	CHECK_EQ(laurel_build_int(b, NULL, 1), -EINVAL);
}

static void key_in_list(struct laurel_builder *b)
{
	laurel_build_list(b, NULL);
	CHECK_EQ(laurel_build_int(b, "k", 1), -EINVAL);
}

static void key_on_top(struct laurel_builder *b)
{
	CHECK_EQ(laurel_build_map(b, "top"), -EINVAL);
}

static void second_top(struct laurel_builder *b)
{
	laurel_build_int(b, NULL, 1);
	CHECK_EQ(laurel_build_int(b, NULL, 2), -EINVAL);
}

static void end_nothing(struct laurel_builder *b)
{
	CHECK_EQ(laurel_build_end(b), -EINVAL);
}

static void too_deep(struct laurel_builder *b)
{
	for (int i = 0; i < LAUREL_BUILD_MAX_DEPTH; i++)
		CHECK_EQ(laurel_build_list(b, NULL), 0);
	CHECK_EQ(laurel_build_list(b, NULL), -EINVAL);
}

static void null_value(struct laurel_builder *b)
{
	laurel_build_map(b, NULL);
	CHECK_EQ(laurel_build_value(b, "v", NULL), -EINVAL);
}

static void still_open(struct laurel_builder *b)
{
	laurel_build_map(b, NULL);
	laurel_build_list(b, "l");
	CHECK(laurel_build_done(b) == NULL);
}

static void nothing(struct laurel_builder *b)
{
	CHECK(laurel_build_done(b) == NULL);
}

int main(void)
{
	nested();
	scalars();
	mistake("no key in a map", no_key_in_map, "without a key inside a map");
	mistake("a key in a list", key_in_list, "key \"k\" given inside a list");
	mistake("a key on the top value", key_on_top, "key \"top\" given for the top value");
	mistake("a second top value", second_top, "a second top value");
	mistake("an end with nothing open", end_nothing, "an end with no map or list open");
	mistake("too deep", too_deep, "nested deeper than 32");
	mistake("NULL value", null_value, "value NULL for key v");
	mistake("still open", still_open, "2 maps or lists still open");
	mistake("nothing built", nothing, "nothing was built");
	return test_done();
}
