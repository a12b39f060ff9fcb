#include "common/json.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const enum json_policy policies[] = {JSON_POLICY_STRICT, JSON_POLICY_LOSSY};

/* Parses text under policy into a new message's "v" and dumps it again; *rc is json_parse's. */
static char *round_trip(const char *text, size_t len, enum json_policy policy, int *rc, char *err,
			size_t errlen)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *slot = laurel_map_put(m, laurel_msg_root(m), "v");
	char *out = NULL;
	*rc = json_parse(text, len, policy, m, slot, err, errlen);
	if (*rc == 0 && json_dump(slot, policy, NULL, &out, NULL) < 0)
		out = NULL;
	laurel_msg_free(m);
	return out;
}

static void check_round_trip(const char *text, const char *want)
{
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++) {
		int rc;
		char err[256] = "";
		char *out = round_trip(text, strlen(text), policies[p], &rc, err, sizeof(err));
		CHECK_EQ(rc, 0);
		if (rc)
			fprintf(stderr, "  %s: %s\n", text, err);
		CHECK_STR(out, want);
		free(out);
	}
}

/* The error of parsing text under policy ("" if it parsed). */
static void check_refused(const char *text, enum json_policy policy, const char *want)
{
	int rc;
	char err[256] = "";
	char *out = round_trip(text, strlen(text), policy, &rc, err, sizeof(err));
	CHECK_EQ(rc, -EINVAL);
	CHECK(out == NULL);
	CHECK_STR(err, want);
	free(out);
}

static void test_round_trips(void)
{
	check_round_trip(
		"{\"a\": 1, \"b\": [true, false, null, 1.5, \"x\"], \"c\": {\"d\": \"e\"}}",
		"{\"a\":1,\"b\":[true,false,null,1.5,\"x\"],\"c\":{\"d\":\"e\"}}");
	/* Key order kept; any JSON value at the top. */
	check_round_trip("{\"z\":1,\"a\":2,\"m\":3}", "{\"z\":1,\"a\":2,\"m\":3}");
	check_round_trip("[]", "[]");
	check_round_trip("{}", "{}");
	check_round_trip("\"text\"", "\"text\"");
	check_round_trip("42", "42");
	check_round_trip("null", "null");
	check_round_trip("true", "true");
	/* Doubles keep 17 digits, so they read back exactly; a real stays a real. */
	check_round_trip("0.1", "0.10000000000000001");
	check_round_trip("1.0", "1.0");
	check_round_trip("-0.0", "-0.0");
	check_round_trip("1e300", "1.0000000000000001e300");
	/* int64 bounds, both ways. */
	check_round_trip("[9223372036854775807, -9223372036854775808]",
			 "[9223372036854775807,-9223372036854775808]");
	/* UTF-8 passes through; \u escapes are decoded, NUL included. */
	check_round_trip("\"\xc3\xa9t\xc3\xa9 \\u00e9 \\ud83d\\ude00\"",
			 "\"\xc3\xa9t\xc3\xa9 \xc3\xa9 \xf0\x9f\x98\x80\"");
	check_round_trip("{\"a\": \"c\\u0000d\"}", "{\"a\":\"c\\u0000d\"}");

	/* The values themselves. */
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *slot = laurel_map_put(m, laurel_msg_root(m), "v");
	char err[256];
	const char *text = "{\"i\": -7, \"s\": \"a\\u0000b\", \"l\": [1.25]}";
	CHECK_EQ(json_parse(text, strlen(text), JSON_POLICY_STRICT, m, slot, err, sizeof(err)), 0);
	CHECK_EQ(slot->type, LAUREL_MAP);
	const struct laurel_value *i = laurel_map_get(slot, "i"), *s = laurel_map_get(slot, "s");
	const struct laurel_value *l = laurel_map_get(slot, "l");
	CHECK(i && i->type == LAUREL_INT && i->u.i == -7);
	CHECK(s && s->type == LAUREL_TEXT);
	if (s)
		CHECK_MEM(s->u.s.ptr, s->u.s.len, "a\0b", 3);
	CHECK(l && l->type == LAUREL_LIST && l->u.list.len == 1 &&
	      l->u.list.items[0].type == LAUREL_DOUBLE && l->u.list.items[0].u.d == 1.25);
	/* The length is given: the text need not end there. */
	CHECK_EQ(json_parse("[1]garbage", 3, JSON_POLICY_STRICT, m, slot, err, sizeof(err)), 0);
	CHECK_EQ(slot->type, LAUREL_LIST);
	char *out;
	size_t len = 0;
	CHECK_EQ(json_dump(slot, JSON_POLICY_STRICT, NULL, &out, &len), 0);
	CHECK_STR(out, "[1]");
	CHECK_EQ(len, 3);
	free(out);
	laurel_msg_free(m);
}

static void test_refused(void)
{
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++) {
		enum json_policy pol = policies[p];
		check_refused("{\"a\": }", pol,
			      "not JSON: unexpected token near '}' at line 1, column 7");
		check_refused("", pol,
			      "not JSON: unexpected token near end of file at line 1, "
			      "column 0");
		check_refused("[1,\n2,,]", pol,
			      "not JSON: unexpected token near ',' at line 2, "
			      "column 3");
		/* Just beyond int64. */
		check_refused("9223372036854775808", pol,
			      "not JSON: too big integer near '9223372036854775808' at line 1, "
			      "column 19");
		check_refused("[-9223372036854775809]", pol,
			      "not JSON: too big negative integer near '-9223372036854775809' at "
			      "line 1, column 21");
		check_refused("1e999", pol,
			      "not JSON: real number overflow near '1e999' at line 1, column 5");
		check_refused("\"\xff\"", pol,
			      "not JSON: unable to decode byte 0xff near '\"' at line 1, column 1");
	}
	/* jansson takes \u0000 in strings, not in keys. */
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++)
		check_refused(
			"{\"a\\u0000b\": 1}", policies[p],
			"not JSON: NUL byte in object key not supported near '\"a\\u0000b\"' at "
			"line 1, column 11");
	/* Duplicate keys: the last wins for consumers (as in Python), refused for the tool. */
	check_round_trip("{\"a\": 1, \"b\": 2}", "{\"a\":1,\"b\":2}");
	int rc;
	char err[256];
	char *out =
		round_trip("{\"a\": 1, \"a\": 2}", 16, JSON_POLICY_STRICT, &rc, err, sizeof(err));
	CHECK_EQ(rc, 0);
	CHECK_STR(out, "{\"a\":2}");
	free(out);
	check_refused("{\"a\": 1, \"a\": 2}", JSON_POLICY_LOSSY,
		      "not JSON: duplicate object key near '\"a\"' at line 1, column 12");
}

/* n nested lists around 1, or around nothing. */
static char *nested(int n, bool empty)
{
	char *s = xmalloc((size_t)n * 2 + 2);
	size_t k = 0;
	for (int i = 0; i < n; i++)
		s[k++] = '[';
	if (!empty)
		s[k++] = '1';
	for (int i = 0; i < n; i++)
		s[k++] = ']';
	s[k] = '\0';
	return s;
}

static void test_depth(void)
{
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++) {
		for (int empty = 0; empty <= 1; empty++) {
			char *ok = nested(JSON_MAX_DEPTH, empty), *deep = nested(33, empty);
			check_round_trip(ok, ok);
			check_refused(
				deep, policies[p],
				"not valid at "
				"$[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
				"[0][0][0][0][0][0][0][0][0][0][0]: lists and maps nest deeper "
				"than 32 levels");
			free(ok);
			free(deep);
		}
		check_refused(
			"{\"a\": [{\"b c\": {\"d\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]"
			"]]]]]]]]]]]]]]]]]]]}}]}",
			policies[p],
			"not valid at $.a[0][\"b c\"].d[0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
			"[0][0][0][0][0][0][0][0][0][0][0][0][0][0]: lists and maps nest deeper "
			"than 32 levels");
	}

	/* Dumping stops a value nested absurdly deep (a cycle made by mistake). */
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *v = laurel_map_put(m, laurel_msg_root(m), "v");
	laurel_value_set_list(m, v, 1);
	struct laurel_value *at = v;
	for (int i = 1; i < JSON_DUMP_MAX_DEPTH; i++) {
		at = laurel_list_push(m, at);
		laurel_value_set_list(m, at, 1);
	}
	char *out = NULL;
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++) {
		CHECK_EQ(json_dump(v, policies[p], NULL, &out, NULL), 0);
		free(out);
	}
	laurel_value_set_nil(laurel_list_push(m, at));
	for (size_t p = 0; p < ARRAY_SIZE(policies); p++)
		CHECK_EQ(json_dump(v, policies[p], NULL, &out, NULL), -EINVAL);
	laurel_msg_free(m);
}

/* Dumps v under policy: the text, or NULL if it failed (then *rc says how). */
static char *dump(const struct laurel_value *v, enum json_policy policy, const char *stream,
		  int *rc)
{
	char *out = NULL;
	*rc = json_dump(v, policy, stream, &out, NULL);
	return *rc ? NULL : out;
}

static void test_no_json_form(void)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	int rc;
	char *out;

	/* Bytes: refused for consumers, {"$bytes": base64} for the tool. */
	laurel_msg_set_bytes(m, "b", "\x00\xff\x01", 3);
	laurel_msg_set_bytes(m, "e", "", 0);
	laurel_msg_set_bytes(m, "two", "ab", 2);
	CHECK(dump(root, JSON_POLICY_STRICT, NULL, &rc) == NULL);
	CHECK_EQ(rc, -EINVAL);
	out = dump(root, JSON_POLICY_LOSSY, NULL, &rc);
	CHECK_STR(out, "{\"b\":{\"$bytes\":\"AP8B\"},\"e\":{\"$bytes\":\"\"},\"two\":{\"$bytes\":"
		       "\"YWI=\"}}");
	/* And back. */
	struct laurel_msg *back = laurel_msg_new();
	struct laurel_value *slot = laurel_map_put(back, laurel_msg_root(back), "v");
	char err[256] = "";
	CHECK_EQ(json_parse(out, strlen(out), JSON_POLICY_LOSSY, back, slot, err, sizeof(err)), 0);
	CHECK(laurel_value_equal(slot, root));
	/* Consumers see such an object as a plain map. */
	CHECK_EQ(json_parse(out, strlen(out), JSON_POLICY_STRICT, back, slot, err, sizeof(err)), 0);
	const struct laurel_value *b = laurel_map_get(slot, "b");
	CHECK(b && b->type == LAUREL_MAP);
	CHECK(b && laurel_map_get(b, "$bytes") && laurel_map_get(b, "$bytes")->type == LAUREL_TEXT);
	laurel_msg_free(back);
	free(out);
	laurel_msg_free(m);

	/* NaN and infinities: refused, or null. */
	static const double odd[] = {NAN, INFINITY, -INFINITY};
	for (size_t i = 0; i < ARRAY_SIZE(odd); i++) {
		m = laurel_msg_new();
		laurel_msg_set_double(m, "d", odd[i]);
		CHECK(dump(laurel_msg_croot(m), JSON_POLICY_STRICT, NULL, &rc) == NULL);
		CHECK_EQ(rc, -EINVAL);
		out = dump(laurel_msg_croot(m), JSON_POLICY_LOSSY, NULL, &rc);
		CHECK_STR(out, "{\"d\":null}");
		free(out);
		laurel_msg_free(m);
	}

	/* Text and keys that are not UTF-8: refused, or U+FFFD for each bad byte. */
	m = laurel_msg_new();
	laurel_msg_set_text(m, "t", "a\xff\xc3(b\xed\xa0\x80");
	CHECK(dump(laurel_msg_croot(m), JSON_POLICY_STRICT, NULL, &rc) == NULL);
	CHECK_EQ(rc, -EINVAL);
	out = dump(laurel_msg_croot(m), JSON_POLICY_LOSSY, NULL, &rc);
	CHECK_STR(out,
		  "{\"t\":\"a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
	free(out);
	laurel_msg_free(m);
	m = laurel_msg_new();
	laurel_msg_set_int(m, "k\xc0", 1);
	CHECK(dump(laurel_msg_croot(m), JSON_POLICY_STRICT, NULL, &rc) == NULL);
	CHECK_EQ(rc, -EINVAL);
	out = dump(laurel_msg_croot(m), JSON_POLICY_LOSSY, NULL, &rc);
	CHECK_STR(out, "{\"k\xef\xbf\xbd\":1}");
	free(out);
	laurel_msg_free(m);
}

static void test_bad_bytes(void)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{"{\"b\": {\"$bytes\": \"@@@@\"}}", "not valid at $.b: \"$bytes\" is not base64: "
						    "character 1 ('@') is not in the base64 "
						    "alphabet"},
		{"{\"b\": {\"$bytes\": \"AAE\"}}", "not valid at $.b: \"$bytes\" is not base64: "
						   "its length (3) is not a multiple of 4 "
						   "(pad the end with '=')"},
		{"{\"b\": {\"$bytes\": \"A=AA\"}}",
		 "not valid at $.b: \"$bytes\" is not base64: '=' at character 2: padding may only "
		 "end the text"},
		{"{\"b\": {\"$bytes\": \"AA=A\"}}",
		 "not valid at $.b: \"$bytes\" is not base64: '=' at character 4: padding may only "
		 "end the text"},
		{"{\"b\": {\"$bytes\": 12}}",
		 "not valid at $.b: \"$bytes\" must be a base64 string"},
		{"{\"b\": [{\"$bytes\": \"AA==\", \"x\": 1}]}",
		 "not valid at $.b[0]: an object with a \"$bytes\" key must have no other key"},
		{"{\"a b\": {\"$bytes\": \"\\u00e9AA\"}}",
		 "not valid at $[\"a b\"]: \"$bytes\" is not base64: character 1 (byte 0xc3) is "
		 "not "
		 "in the base64 alphabet"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		check_refused(cases[i].text, JSON_POLICY_LOSSY, cases[i].err);
		int rc;
		char err[256];
		char *out = round_trip(cases[i].text, strlen(cases[i].text), JSON_POLICY_STRICT,
				       &rc, err, sizeof(err));
		CHECK_EQ(rc, 0);
		CHECK(out != NULL);
		free(out);
	}
	/* Padding, and the top level. */
	check_round_trip("{\"$bytes\": \"AAAA\"}", "{\"$bytes\":\"AAAA\"}");
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *slot = laurel_map_put(m, laurel_msg_root(m), "v");
	char err[256];
	const char *text = "[{\"$bytes\": \"YQ==\"}, {\"$bytes\": \"YWI=\"}, {\"$bytes\": \"\"}]";
	CHECK_EQ(json_parse(text, strlen(text), JSON_POLICY_LOSSY, m, slot, err, sizeof(err)), 0);
	CHECK_EQ(slot->type, LAUREL_LIST);
	CHECK_EQ(slot->u.list.len, 3);
	if (slot->u.list.len == 3) {
		CHECK_EQ(slot->u.list.items[0].type, LAUREL_BYTES);
		CHECK_MEM(slot->u.list.items[0].u.s.ptr, slot->u.list.items[0].u.s.len, "a", 1);
		CHECK_MEM(slot->u.list.items[1].u.s.ptr, slot->u.list.items[1].u.s.len, "ab", 2);
		CHECK_EQ(slot->u.list.items[2].type, LAUREL_BYTES);
		CHECK_EQ(slot->u.list.items[2].u.s.len, 0);
	}
	laurel_msg_free(m);
}

static void test_stream(void)
{
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_text(m, "text", "hi");
	int rc;
	char *out = dump(laurel_msg_croot(m), JSON_POLICY_STRICT, "room", &rc);
	CHECK_STR(out, "{\"stream\":\"room\",\"payload\":{\"text\":\"hi\"}}");
	free(out);
	out = dump(laurel_msg_croot(m), JSON_POLICY_LOSSY, "room", &rc);
	CHECK_STR(out, "{\"stream\":\"room\",\"payload\":{\"text\":\"hi\"}}");
	free(out);
	/* A stream name that is not UTF-8: refused, or U+FFFD. */
	CHECK(dump(laurel_msg_croot(m), JSON_POLICY_STRICT, "r\xff", &rc) == NULL);
	CHECK_EQ(rc, -EINVAL);
	out = dump(laurel_msg_croot(m), JSON_POLICY_LOSSY, "r\xff", &rc);
	CHECK_STR(out, "{\"stream\":\"r\xef\xbf\xbd\",\"payload\":{\"text\":\"hi\"}}");
	free(out);
	/* A payload without a JSON form fails the whole frame. */
	laurel_msg_set_bytes(m, "b", "x", 1);
	CHECK(dump(laurel_msg_croot(m), JSON_POLICY_STRICT, "room", &rc) == NULL);
	CHECK_EQ(rc, -EINVAL);
	/* Any value may be the payload. */
	struct laurel_value nil;
	laurel_value_set_nil(&nil);
	out = dump(&nil, JSON_POLICY_STRICT, "s", &rc);
	CHECK_STR(out, "{\"stream\":\"s\",\"payload\":null}");
	free(out);
	laurel_msg_free(m);
}

int main(void)
{
	test_round_trips();
	test_refused();
	test_depth();
	test_no_json_form();
	test_bad_bytes();
	test_stream();
	return test_done();
}
