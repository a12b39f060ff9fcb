#include "laurel/message.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

/* Hex text ("8b ad 72 ...", spaces optional) to bytes appended to out. */
static void unhex(struct buf *out, const char *hex)
{
	for (const char *p = hex; *p;) {
		if (isspace((unsigned char)*p)) {
			p++;
			continue;
		}
		unsigned v;
		if (sscanf(p, "%2x", &v) != 1) {
			test_fail(__FILE__, __LINE__, "bad hex at \"%.10s\"", p);
			return;
		}
		buf_append_byte(out, (unsigned char)v);
		p += 2;
	}
}

static int decode_hex_lim(const char *hex, const struct laurel_decode_limits *limits,
			  struct laurel_msg **out)
{
	struct buf b;
	buf_init(&b);
	unhex(&b, hex);
	int r = laurel_msg_decode(b.data, b.len, limits, out);
	buf_fini(&b);
	return r;
}

static int decode_hex(const char *hex, struct laurel_msg **out)
{
	return decode_hex_lim(hex, NULL, out);
}

/* --- The catalog of captured Python messages ----------------------------------------------------
 * A "fields:" line is a Python repr with a type after every scalar: {'k': 'v'<str>, 'n': 1<int>,
 * 'h': [[b'x'<bytes>, ...]]}. It is parsed into a laurel value to compare with the decoded bytes.
 */

struct parser {
	const char *p;
	struct laurel_msg *m;
	int err;
};

static void skip_ws(struct parser *ps)
{
	while (*ps->p == ' ')
		ps->p++;
}

static bool eat(struct parser *ps, char c)
{
	skip_ws(ps);
	if (*ps->p != c)
		return false;
	ps->p++;
	return true;
}

/* A quoted Python string body with escapes, into out. */
static void parse_quoted(struct parser *ps, struct buf *out)
{
	char q = *ps->p++;
	while (*ps->p && *ps->p != q) {
		char c = *ps->p++;
		if (c != '\\') {
			buf_append_byte(out, (unsigned char)c);
			continue;
		}
		c = *ps->p++;
		unsigned v;
		switch (c) {
		case 'x':
			if (sscanf(ps->p, "%2x", &v) != 1)
				ps->err = 1;
			ps->p += 2;
			buf_append_byte(out, (unsigned char)v);
			break;
		case 'n':
			buf_append_byte(out, '\n');
			break;
		case 'r':
			buf_append_byte(out, '\r');
			break;
		case 't':
			buf_append_byte(out, '\t');
			break;
		default:
			buf_append_byte(out, (unsigned char)c);
			break;
		}
	}
	if (*ps->p != q)
		ps->err = 1;
	else
		ps->p++;
}

/* The <type> annotation after a scalar, checked against what the repr itself says. */
static void parse_annotation(struct parser *ps, const char *want)
{
	size_t n = strlen(want);
	if (*ps->p == '<' && strncmp(ps->p + 1, want, n) == 0 && ps->p[n + 1] == '>')
		ps->p += n + 2;
	else
		ps->err = 1;
}

static void parse_value(struct parser *ps, struct laurel_value *v);

static void parse_map(struct parser *ps, struct laurel_value *v)
{
	laurel_value_set_map(ps->m, v, 0);
	if (eat(ps, '}'))
		return;
	do {
		skip_ws(ps);
		struct buf k;
		buf_init(&k);
		if (*ps->p == '\'' || *ps->p == '"')
			parse_quoted(ps, &k);
		else
			ps->err = 1;
		if (!eat(ps, ':'))
			ps->err = 1;
		struct laurel_value *slot = laurel_map_putn(ps->m, v, k.data ? k.data : "", k.len);
		buf_fini(&k);
		parse_value(ps, slot);
	} while (!ps->err && eat(ps, ','));
	if (!eat(ps, '}'))
		ps->err = 1;
}

static void parse_value(struct parser *ps, struct laurel_value *v)
{
	skip_ws(ps);
	if (ps->err)
		return;
	if (*ps->p == '{') {
		ps->p++;
		parse_map(ps, v);
	} else if (*ps->p == '[') {
		ps->p++;
		laurel_value_set_list(ps->m, v, 0);
		if (eat(ps, ']'))
			return;
		do
			parse_value(ps, laurel_list_push(ps->m, v));
		while (!ps->err && eat(ps, ','));
		if (!eat(ps, ']'))
			ps->err = 1;
	} else if (*ps->p == '\'' || *ps->p == '"' || *ps->p == 'b') {
		bool bytes = *ps->p == 'b';
		if (bytes)
			ps->p++;
		struct buf s;
		buf_init(&s);
		parse_quoted(ps, &s);
		if (bytes)
			laurel_value_set_bytes(ps->m, v, s.data, s.len);
		else
			laurel_value_set_text(ps->m, v, s.data ? s.data : "", s.len);
		buf_fini(&s);
		parse_annotation(ps, bytes ? "bytes" : "str");
	} else if (strncmp(ps->p, "True", 4) == 0 || strncmp(ps->p, "False", 5) == 0) {
		bool b = *ps->p == 'T';
		ps->p += b ? 4 : 5;
		laurel_value_set_bool(v, b);
		parse_annotation(ps, "bool");
	} else if (strncmp(ps->p, "None", 4) == 0) {
		ps->p += 4;
		laurel_value_set_nil(v);
		parse_annotation(ps, "NoneType");
	} else if (*ps->p == '-' || isdigit((unsigned char)*ps->p)) {
		char *end;
		long long i = strtoll(ps->p, &end, 10);
		ps->p = end;
		laurel_value_set_int(v, i);
		parse_annotation(ps, "int");
	} else {
		ps->err = 1;
	}
}

static int check_block(int index, const char *title, const char *fields, const char *hex)
{
	int failures = test_failures;
	struct parser ps = {.p = fields, .m = laurel_msg_new()};
	parse_value(&ps, laurel_msg_root(ps.m));
	CHECK_EQ(ps.err, 0);
	const struct laurel_value *want = laurel_msg_croot(ps.m);
	CHECK_EQ(want->type, LAUREL_MAP);

	struct buf wire;
	buf_init(&wire);
	unhex(&wire, hex);
	struct laurel_msg *m = NULL;
	CHECK_EQ(laurel_msg_decode(wire.data, wire.len, NULL, &m), 0);
	if (!m || want->type != LAUREL_MAP)
		goto out;

	/* Every listed field, in order, with its type; then the whole value. */
	const struct laurel_value *root = laurel_msg_croot(m);
	CHECK_EQ(root->u.map.len, want->u.map.len);
	for (size_t i = 0; i < want->u.map.len && i < root->u.map.len; i++) {
		const struct laurel_entry *we = &want->u.map.items[i], *ge = &root->u.map.items[i];
		CHECK_STR(ge->key.ptr, we->key.ptr);
		CHECK_STR(laurel_type_name(ge->value.type), laurel_type_name(we->value.type));
	}
	CHECK(laurel_value_equal(root, want));

	/* The captured bytes come back byte for byte. */
	char *enc;
	size_t enclen;
	laurel_msg_encode(m, &enc, &enclen);
	CHECK_MEM(enc, enclen, wire.data, wire.len);
	free(enc);

	/* Every strict prefix is truncated. */
	int bad = 0;
	for (size_t n = 0; n < wire.len; n++) {
		struct laurel_msg *t = NULL;
		int r = laurel_msg_decode(wire.data, n, NULL, &t);
		if (r != -EINVAL || t) {
			test_fail(__FILE__, __LINE__, "block %d prefix %zu: %d", index, n, r);
			bad++;
		}
		laurel_msg_free(t);
	}
	CHECK_EQ(bad, 0);

	/* Trailing bytes. */
	buf_append_byte(&wire, 0xc0);
	struct laurel_msg *t = NULL;
	CHECK_EQ(laurel_msg_decode(wire.data, wire.len, NULL, &t), -EINVAL);
	CHECK(t == NULL);
	laurel_msg_free(m);
out:
	buf_fini(&wire);
	laurel_msg_free(ps.m);
	if (test_failures != failures)
		fprintf(stderr, "  in catalog block %d: %s\n", index, title);
	return 0;
}

/* The first block is checked by hand as well, so a parser mistake cannot hide a decoder one. */
static void check_first(const char *hex)
{
	struct laurel_msg *m = NULL;
	CHECK_EQ(decode_hex(hex, &m), 0);
	if (!m)
		return;
	size_t len = 0;
	CHECK_STR(laurel_msg_get_text(m, "reply_channel", &len),
		  "daphne.response.JSKQQYqLSQ!XsBxGbfRTX");
	CHECK_EQ(len, 37);
	CHECK_STR(laurel_msg_get_text(m, "method", NULL), "GET");
	CHECK(laurel_msg_get_bytes(m, "query_string", &len) != NULL);
	CHECK_EQ(len, 0);
	const struct laurel_value *h = laurel_msg_get(m, "headers");
	CHECK(h && h->type == LAUREL_LIST && h->u.list.len == 3);
	if (h && h->type == LAUREL_LIST && h->u.list.len == 3) {
		const struct laurel_value *h0 = &h->u.list.items[0];
		CHECK_EQ(h0->type, LAUREL_LIST);
		CHECK_EQ(h0->u.list.len, 2);
		CHECK_EQ(h0->u.list.items[0].type, LAUREL_BYTES);
		CHECK_EQ(h0->u.list.items[1].type, LAUREL_BYTES);
		CHECK_MEM(h0->u.list.items[0].u.s.ptr, h0->u.list.items[0].u.s.len, "host", 4);
		CHECK_MEM(h0->u.list.items[1].u.s.ptr, h0->u.list.items[1].u.s.len,
			  "127.0.0.1:8001", 14);
	}
	const struct laurel_value *c = laurel_msg_get(m, "client");
	CHECK(c && c->type == LAUREL_LIST && c->u.list.len == 2);
	if (c && c->type == LAUREL_LIST && c->u.list.len == 2) {
		CHECK_EQ(c->u.list.items[0].type, LAUREL_TEXT);
		CHECK_STR(c->u.list.items[0].u.s.ptr, "127.0.0.1");
		CHECK_EQ(c->u.list.items[1].type, LAUREL_INT);
		CHECK_EQ(c->u.list.items[1].u.i, 57604);
	}
	laurel_msg_free(m);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	return b.data;
}

static void test_catalog(const char *path)
{
	char *text = slurp(path);
	CHECK(text != NULL);
	if (!text) {
		fprintf(stderr, "cannot read %s\n", path);
		return;
	}
	int blocks = 0;
	char *title = NULL, *fields = NULL;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strncmp(line, "=== ", 4) == 0) {
			title = line;
			fields = NULL;
		} else if (strncmp(line, "fields: ", 8) == 0) {
			fields = line + 8;
		} else if (strncmp(line, "hex:", 4) == 0 && title && fields) {
			if (blocks == 0)
				check_first(line + 4);
			check_block(blocks, title, fields, line + 4);
			blocks++;
			title = fields = NULL;
		}
	}
	CHECK_EQ(blocks, 10);
	free(text);
}

/* --- Every width of every type ---------------------------------------------------------------- */

/* Decodes {"v": <value>} from the value's hex, checks that it re-encodes to {"v": <canon>}
 * (canon NULL: the same bytes), and returns the message for checking v. */
static struct laurel_msg *decode_v(const char *value_hex, const char *canon_hex, int line)
{
	struct buf in, want;
	buf_init(&in);
	buf_init(&want);
	buf_append(&in, "\x81\xa1v", 3);
	unhex(&in, value_hex);
	buf_append(&want, "\x81\xa1v", 3);
	unhex(&want, canon_hex ? canon_hex : value_hex);
	struct laurel_msg *m = NULL;
	int r = laurel_msg_decode(in.data, in.len, NULL, &m);
	if (r != 0) {
		test_fail(__FILE__, line, "decoding %s: %d", value_hex, r);
	} else {
		char *enc;
		size_t len;
		laurel_msg_encode(m, &enc, &len);
		test_checks++;
		if (len != want.len || memcmp(enc, want.data, len) != 0) {
			test_fail(__FILE__, line, "re-encoding %s", value_hex);
			test_hexdump("  got     ", enc, len);
			test_hexdump("  expected", want.data, want.len);
		}
		free(enc);
	}
	buf_fini(&in);
	buf_fini(&want);
	return m;
}

static void check_int_v(const char *hex, int64_t want, const char *canon, int line)
{
	struct laurel_msg *m = decode_v(hex, canon, line);
	int64_t i = 0;
	test_checks++;
	if (!m || laurel_msg_get_int(m, "v", &i) != 0 || i != want)
		test_fail(__FILE__, line, "%s: %" PRId64 " vs %" PRId64, hex, i, want);
	laurel_msg_free(m);
}

static void check_double_v(const char *hex, double want, const char *canon, int line)
{
	struct laurel_msg *m = decode_v(hex, canon, line);
	double d = 0;
	test_checks++;
	if (!m || laurel_msg_get_double(m, "v", &d) != 0 || d != want)
		test_fail(__FILE__, line, "%s: %g vs %g", hex, d, want);
	laurel_msg_free(m);
}

#define INT_V(hex, want, canon) check_int_v(hex, want, canon, __LINE__)
#define DOUBLE_V(hex, want, canon) check_double_v(hex, want, canon, __LINE__)

/* A str or bin of n bytes with header hdr (hex), re-encoding with header canon. */
static void check_raw(const char *hdr, size_t n, bool text, const char *canon)
{
	struct buf in, want;
	buf_init(&in);
	buf_init(&want);
	buf_append(&in, "\x81\xa1v", 3);
	unhex(&in, hdr);
	buf_append(&want, "\x81\xa1v", 3);
	unhex(&want, canon);
	for (size_t i = 0; i < n; i++) {
		buf_append_byte(&in, (unsigned char)('0' + i % 10));
		buf_append_byte(&want, (unsigned char)('0' + i % 10));
	}
	struct laurel_msg *m = NULL;
	CHECK_EQ(laurel_msg_decode(in.data, in.len, NULL, &m), 0);
	if (m) {
		size_t len = 0;
		const char *s = text ? laurel_msg_get_text(m, "v", &len)
				     : laurel_msg_get_bytes(m, "v", &len);
		CHECK(s != NULL);
		CHECK_EQ(len, n);
		CHECK_MEM(s, len, in.data + in.len - n, n);
		char *enc;
		size_t enclen;
		laurel_msg_encode(m, &enc, &enclen);
		CHECK_MEM(enc, enclen, want.data, want.len);
		free(enc);
		laurel_msg_free(m);
	}
	buf_fini(&in);
	buf_fini(&want);
}

static void test_widths(void)
{
	/* Integers: every form, canonical re-encoding as Python's msgpack. */
	INT_V("00", 0, NULL);
	INT_V("7f", 127, NULL);
	INT_V("ff", -1, NULL);
	INT_V("e0", -32, NULL);
	INT_V("cc 80", 128, NULL);
	INT_V("cc ff", 255, NULL);
	INT_V("cc 05", 5, "05");
	INT_V("cd 01 00", 256, NULL);
	INT_V("cd ff ff", 65535, NULL);
	INT_V("cd 00 7f", 127, "7f");
	INT_V("ce 00 01 00 00", 65536, NULL);
	INT_V("ce ff ff ff ff", 4294967295LL, NULL);
	INT_V("ce 00 00 00 ff", 255, "cc ff");
	INT_V("cf 00 00 00 01 00 00 00 00", 4294967296LL, NULL);
	INT_V("cf 7f ff ff ff ff ff ff ff", INT64_MAX, NULL);
	INT_V("cf 00 00 00 00 00 00 00 00", 0, "00");
	INT_V("d0 df", -33, NULL);
	INT_V("d0 80", -128, NULL);
	INT_V("d0 05", 5, "05");
	INT_V("d0 ff", -1, "ff");
	INT_V("d1 ff 7f", -129, NULL);
	INT_V("d1 80 00", -32768, NULL);
	INT_V("d1 00 80", 128, "cc 80");
	INT_V("d2 ff ff 7f ff", -32769, NULL);
	INT_V("d2 80 00 00 00", INT32_MIN, NULL);
	INT_V("d2 00 01 00 00", 65536, "ce 00 01 00 00");
	INT_V("d3 ff ff ff ff 7f ff ff ff", (int64_t)INT32_MIN - 1, NULL);
	INT_V("d3 80 00 00 00 00 00 00 00", INT64_MIN, NULL);
	INT_V("d3 ff ff ff ff ff ff ff ff", -1, "ff");
	INT_V("d3 7f ff ff ff ff ff ff ff", INT64_MAX, "cf 7f ff ff ff ff ff ff ff");

	/* A uint64 above INT64_MAX has no int64 value. */
	struct laurel_msg *m = NULL;
	CHECK_EQ(decode_hex("81 a1 76 cf 80 00 00 00 00 00 00 00", &m), -EINVAL);
	CHECK_EQ(decode_hex("81 a1 76 cf ff ff ff ff ff ff ff ff", &m), -EINVAL);
	CHECK(m == NULL);

	/* Floats: float32 widens to a double, everything encodes as float64. */
	DOUBLE_V("ca 3f c0 00 00", 1.5, "cb 3f f8 00 00 00 00 00 00");
	DOUBLE_V("ca c2 f6 e9 79", (double)-123.456f, "cb c0 5e dd 2f 20 00 00 00");
	DOUBLE_V("cb 40 09 21 fb 54 44 2d 18", 3.141592653589793, NULL);
	DOUBLE_V("cb 00 00 00 00 00 00 00 00", 0.0, NULL);
	DOUBLE_V("cb 80 00 00 00 00 00 00 00", -0.0, NULL);

	/* nil, bool. */
	m = decode_v("c0", NULL, __LINE__);
	CHECK(m && laurel_msg_get(m, "v") && laurel_msg_get(m, "v")->type == LAUREL_NIL);
	laurel_msg_free(m);
	bool b = false;
	m = decode_v("c3", NULL, __LINE__);
	CHECK(m && laurel_msg_get_bool(m, "v", &b) == 0 && b);
	laurel_msg_free(m);
	m = decode_v("c2", NULL, __LINE__);
	CHECK(m && laurel_msg_get_bool(m, "v", &b) == 0 && !b);
	laurel_msg_free(m);

	/* Strings and binaries in every width; re-encoded in the smallest. */
	check_raw("a0", 0, true, "a0");
	check_raw("a5", 5, true, "a5");
	check_raw("bf", 31, true, "bf");
	check_raw("d9 05", 5, true, "a5");
	check_raw("d9 20", 32, true, "d9 20");
	check_raw("d9 ff", 255, true, "d9 ff");
	check_raw("da 00 05", 5, true, "a5");
	check_raw("da 01 00", 256, true, "da 01 00");
	check_raw("da ff ff", 65535, true, "da ff ff");
	check_raw("db 00 00 00 05", 5, true, "a5");
	check_raw("db 00 00 00 00", 0, true, "a0");
	check_raw("db 00 01 00 00", 65536, true, "db 00 01 00 00");
	check_raw("c4 00", 0, false, "c4 00");
	check_raw("c4 05", 5, false, "c4 05");
	check_raw("c4 ff", 255, false, "c4 ff");
	check_raw("c5 00 05", 5, false, "c4 05");
	check_raw("c5 01 00", 256, false, "c5 01 00");
	check_raw("c6 00 00 00 05", 5, false, "c4 05");
	check_raw("c6 00 01 00 00", 65536, false, "c6 00 01 00 00");

	/* Arrays and maps in every width. */
	const char *arrays[][2] = {
		{"90", NULL},
		{"92 01 a1 78", NULL},
		{"dc 00 02 01 a1 78", "92 01 a1 78"},
		{"dd 00 00 00 02 01 a1 78", "92 01 a1 78"},
		{"dc 00 00", "90"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(arrays); i++) {
		m = decode_v(arrays[i][0], arrays[i][1], __LINE__);
		const struct laurel_value *v = m ? laurel_msg_get(m, "v") : NULL;
		CHECK(v && v->type == LAUREL_LIST);
		if (v && v->type == LAUREL_LIST && v->u.list.len == 2) {
			CHECK_EQ(v->u.list.items[0].u.i, 1);
			CHECK_STR(v->u.list.items[1].u.s.ptr, "x");
		}
		laurel_msg_free(m);
	}
	const char *maps[][2] = {
		{"80", NULL},
		{"82 a1 61 01 a1 62 c4 01 78", NULL},
		{"de 00 02 a1 61 01 a1 62 c4 01 78", "82 a1 61 01 a1 62 c4 01 78"},
		{"df 00 00 00 02 a1 61 01 a1 62 c4 01 78", "82 a1 61 01 a1 62 c4 01 78"},
		{"de 00 00", "80"},
		{"81 d9 01 61 01", "81 a1 61 01"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
		m = decode_v(maps[i][0], maps[i][1], __LINE__);
		const struct laurel_value *v = m ? laurel_msg_get(m, "v") : NULL;
		CHECK(v && v->type == LAUREL_MAP);
		const struct laurel_value *a = laurel_map_get(v, "a");
		if (v && v->type == LAUREL_MAP && v->u.map.len > 0)
			CHECK(a && a->type == LAUREL_INT && a->u.i == 1);
		laurel_msg_free(m);
	}

	/* The root in map16 and map32, and big containers in the wide forms. */
	m = NULL;
	CHECK_EQ(decode_hex("de 00 01 a1 61 01", &m), 0);
	laurel_msg_free(m);
	m = NULL;
	CHECK_EQ(decode_hex("df 00 00 00 01 a1 61 01", &m), 0);
	laurel_msg_free(m);

	m = laurel_msg_new();
	struct laurel_value *l = laurel_map_put(m, laurel_msg_root(m), "l");
	laurel_value_set_list(m, l, 0);
	for (int i = 0; i < 70000; i++)
		laurel_value_set_int(laurel_list_push(m, l), i % 200);
	char key[16];
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		laurel_msg_set_int(m, key, i);
	}
	char *enc;
	size_t len;
	laurel_msg_encode(m, &enc, &len);
	CHECK_EQ((unsigned char)enc[0], 0xde);
	CHECK_EQ((unsigned char)enc[3], 0xa1);
	CHECK_EQ((unsigned char)enc[5], 0xdd);
	struct laurel_msg *m2 = NULL;
	CHECK_EQ(laurel_msg_decode(enc, len, NULL, &m2), 0);
	CHECK(m2 && laurel_value_equal(laurel_msg_croot(m), laurel_msg_croot(m2)));
	laurel_msg_free(m2);
	free(enc);
	laurel_msg_free(m);
}

/* --- Hostile input ---------------------------------------------------------------------------- */

#define REJECT(hex, err)                                                                           \
	do {                                                                                       \
		struct laurel_msg *_m = (struct laurel_msg *)&sentinel;                            \
		int _r = decode_hex(hex, &_m);                                                     \
		CHECK_EQ(_r, err);                                                                 \
		CHECK(_m == (struct laurel_msg *)&sentinel);                                       \
	} while (0)

static int sentinel;

/* {"v": [[[...1...]]]} with n lists inside the root map: n + 1 levels. */
static int decode_nested(size_t n, const struct laurel_decode_limits *limits)
{
	struct buf b;
	buf_init(&b);
	buf_append(&b, "\x81\xa1v", 3);
	for (size_t i = 0; i < n; i++)
		buf_append_byte(&b, 0x91);
	buf_append_byte(&b, 0x01);
	struct laurel_msg *m = NULL;
	int r = laurel_msg_decode(b.data, b.len, limits, &m);
	if (r == 0) {
		/* The deepest value is there. */
		const struct laurel_value *v = laurel_msg_get(m, "v");
		for (size_t i = 1; i < n && v; i++)
			v = v->type == LAUREL_LIST ? &v->u.list.items[0] : NULL;
		if (!v || v->type != LAUREL_LIST || v->u.list.items[0].u.i != 1)
			r = -1000;
	}
	laurel_msg_free(m);
	buf_fini(&b);
	return r;
}

static void test_reject(void)
{
	/* Not a map at the root, or nothing at all. */
	REJECT("", -EINVAL);
	CHECK_EQ(laurel_msg_decode(NULL, 0, NULL, &(struct laurel_msg *){NULL}), -EINVAL);
	REJECT("90", -EINVAL);
	REJECT("91 80", -EINVAL);
	REJECT("01", -EINVAL);
	REJECT("c0", -EINVAL);
	REJECT("a1 61", -EINVAL);
	REJECT("c4 01 61", -EINVAL);

	/* Keys that are not text, at the root and further in. */
	REJECT("81 c4 01 6b 01", -EINVAL);
	REJECT("81 01 01", -EINVAL);
	REJECT("81 c0 01", -EINVAL);
	REJECT("81 90 01", -EINVAL);
	REJECT("81 a1 6b 81 c4 01 6b 01", -EINVAL);
	REJECT("81 a1 6b 91 81 05 01", -EINVAL);

	/* Duplicate keys, in small and large maps. */
	REJECT("82 a1 61 01 a1 61 02", -EINVAL);
	REJECT("81 a1 6b 82 a0 01 a0 02", -EINVAL);
	struct buf b;
	buf_init(&b);
	buf_append(&b, "\xde\x00\x14", 3);
	for (int i = 0; i < 20; i++) {
		char k[8];
		int n = snprintf(k, sizeof(k), "k%d", i == 19 ? 7 : i);
		codec_put_str(&b, k, (size_t)n);
		codec_put_int(&b, i);
	}
	struct laurel_msg *m = NULL;
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &m), -EINVAL);
	buf_reset(&b);
	buf_append(&b, "\xde\x00\x14", 3);
	for (int i = 0; i < 20; i++) {
		char k[8];
		int n = snprintf(k, sizeof(k), "k%d", i);
		codec_put_str(&b, k, (size_t)n);
		codec_put_int(&b, i);
	}
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &m), 0);
	laurel_msg_free(m);
	m = NULL;

	/* Ext types, the timestamp extension and the never-used byte, anywhere. */
	REJECT("81 a1 76 d4 01 00", -EINVAL);
	REJECT("81 a1 76 d5 01 00 00", -EINVAL);
	REJECT("81 a1 76 d6 ff 00 00 00 00", -EINVAL);
	REJECT("81 a1 76 d7 ff 00 00 00 00 00 00 00 00", -EINVAL);
	REJECT("81 a1 76 d8 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", -EINVAL);
	REJECT("81 a1 76 c7 01 01 00", -EINVAL);
	REJECT("81 a1 76 c8 00 01 01 00", -EINVAL);
	REJECT("81 a1 76 c9 00 00 00 01 01 00", -EINVAL);
	REJECT("81 a1 76 91 d4 01 00", -EINVAL);
	REJECT("81 a1 76 c1", -EINVAL);
	REJECT("81 c1 01", -EINVAL);

	/* Truncated lengths and payloads. */
	REJECT("81 a1 76 d9", -EINVAL);
	REJECT("81 a1 76 da 00", -EINVAL);
	REJECT("81 a1 76 db 00 00 00", -EINVAL);
	REJECT("81 a1 76 db 00 00 00 02 61", -EINVAL);
	REJECT("81 a1 76 c6 00 00 00 02 61", -EINVAL);
	REJECT("81 a1 76 cf 00 00 00", -EINVAL);
	REJECT("81 a1 76 cb 00", -EINVAL);
	REJECT("81 a1 76 dc 00", -EINVAL);
	REJECT("82 a1 76 01", -EINVAL);
	REJECT("81 a1 76 92 01", -EINVAL);

	/* Trailing bytes. */
	REJECT("80 00", -EINVAL);
	REJECT("81 a1 76 01 01", -EINVAL);
	REJECT("80 80", -EINVAL);

	/* Counts far beyond the input are refused before anything is allocated for them. */
	int64_t t0 = util_now_ms();
	REJECT("df ff ff ff ff", -EINVAL);
	REJECT("dd ff ff ff ff", -EINVAL);
	REJECT("81 a1 76 dd ff ff ff ff", -EINVAL);
	REJECT("81 a1 76 df ff ff ff ff", -EINVAL);
	REJECT("81 a1 76 c6 ff ff ff ff", -EINVAL);
	REJECT("81 a1 76 db ff ff ff ff 00", -EINVAL);
	REJECT("81 a1 76 9f 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d", -EINVAL);
	REJECT("81 a1 76 dc ff ff 00", -EINVAL);
	REJECT("8f a1 76 01", -EINVAL);
	/* A full-size input made of one huge claimed array and filler. */
	buf_reset(&b);
	buf_append(&b, "\x81\xa1v\xdd\x7f\xff\xff\xff", 8);
	for (int i = 0; i < 1000000; i++)
		buf_append_byte(&b, 0x90);
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &m), -EINVAL);
	/* One million nested lists: the depth limit stops it at once. */
	buf_reset(&b);
	buf_append(&b, "\x81\xa1v", 3);
	for (int i = 0; i < 1000000; i++)
		buf_append_byte(&b, 0x91);
	buf_append_byte(&b, 0x01);
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &m), -E2BIG);
	CHECK(m == NULL);
	int64_t elapsed = util_now_ms() - t0;
	CHECK_INT(elapsed, <, 2000);

	/* Depth: the root map is level 1; 32 levels by default, never more. */
	CHECK_EQ(decode_nested(31, NULL), 0);
	CHECK_EQ(decode_nested(32, NULL), -E2BIG);
	CHECK_EQ(decode_nested(33, NULL), -E2BIG);
	struct laurel_decode_limits lim = {.max_depth = 3};
	CHECK_EQ(decode_nested(2, &lim), 0);
	CHECK_EQ(decode_nested(3, &lim), -E2BIG);
	REJECT("81 a1 76 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 "
	       "91 91 91 91 91 91 91 90",
	       -E2BIG);
	lim.max_depth = 1000;
	CHECK_EQ(decode_nested(31, &lim), 0);
	CHECK_EQ(decode_nested(32, &lim), -E2BIG);
	lim.max_depth = 1;
	m = NULL;
	CHECK_EQ(decode_hex_lim("81 a1 76 01", &lim, &m), 0);
	laurel_msg_free(m);
	m = NULL;
	CHECK_EQ(decode_hex_lim("81 a1 76 90", &lim, &m), -E2BIG);
	CHECK_EQ(decode_hex_lim("81 a1 76 80", &lim, &m), -E2BIG);
	CHECK(m == NULL);

	/* Size limit. */
	buf_reset(&b);
	unhex(&b, "82 a1 61 01 a1 62 a3 61 62 63");
	lim = (struct laurel_decode_limits){.max_bytes = b.len - 1};
	m = (struct laurel_msg *)&sentinel;
	CHECK_EQ(laurel_msg_decode(b.data, b.len, &lim, &m), -E2BIG);
	CHECK(m == (struct laurel_msg *)&sentinel);
	lim.max_bytes = b.len;
	m = NULL;
	CHECK_EQ(laurel_msg_decode(b.data, b.len, &lim, &m), 0);
	CHECK_STR(m ? laurel_msg_get_text(m, "b", NULL) : NULL, "abc");
	laurel_msg_free(m);
	buf_fini(&b);
}

/* --- Encoding helpers ------------------------------------------------------------------------- */

static void check_put(struct buf *b, const char *want_hex, size_t payload, int line)
{
	struct buf want;
	buf_init(&want);
	unhex(&want, want_hex);
	test_checks++;
	if (b->len != want.len + payload || memcmp(b->data, want.data, want.len) != 0) {
		test_fail(__FILE__, line, "header %s, %zu payload bytes", want_hex, payload);
		test_hexdump("  got     ", b->data, b->len < 16 ? b->len : 16);
	}
	buf_fini(&want);
	buf_reset(b);
}

#define PUT(b, hex, payload) check_put(b, hex, payload, __LINE__)

static void test_put(void)
{
	struct buf b;
	buf_init(&b);
	size_t big = 70000;
	char *s = xcalloc(1, big);
	codec_put_str(&b, s, 0);
	PUT(&b, "a0", 0);
	codec_put_str(&b, s, 31);
	PUT(&b, "bf", 31);
	codec_put_str(&b, s, 32);
	PUT(&b, "d9 20", 32);
	codec_put_str(&b, s, 255);
	PUT(&b, "d9 ff", 255);
	codec_put_str(&b, s, 256);
	PUT(&b, "da 01 00", 256);
	codec_put_str(&b, s, 65535);
	PUT(&b, "da ff ff", 65535);
	codec_put_str(&b, s, 65536);
	PUT(&b, "db 00 01 00 00", 65536);
	codec_put_bin(&b, s, 0);
	PUT(&b, "c4 00", 0);
	codec_put_bin(&b, s, 255);
	PUT(&b, "c4 ff", 255);
	codec_put_bin(&b, s, 256);
	PUT(&b, "c5 01 00", 256);
	codec_put_bin(&b, s, 65535);
	PUT(&b, "c5 ff ff", 65535);
	codec_put_bin(&b, s, big);
	PUT(&b, "c6 00 01 11 70", big);
	codec_put_array_header(&b, 0);
	PUT(&b, "90", 0);
	codec_put_array_header(&b, 15);
	PUT(&b, "9f", 0);
	codec_put_array_header(&b, 16);
	PUT(&b, "dc 00 10", 0);
	codec_put_array_header(&b, 65535);
	PUT(&b, "dc ff ff", 0);
	codec_put_array_header(&b, 65536);
	PUT(&b, "dd 00 01 00 00", 0);
	codec_put_map_header(&b, 0);
	PUT(&b, "80", 0);
	codec_put_map_header(&b, 15);
	PUT(&b, "8f", 0);
	codec_put_map_header(&b, 16);
	PUT(&b, "de 00 10", 0);
	codec_put_map_header(&b, 65536);
	PUT(&b, "df 00 01 00 00", 0);

	static const struct {
		int64_t i;
		const char *hex;
	} ints[] = {
		{0, "00"},
		{1, "01"},
		{127, "7f"},
		{128, "cc 80"},
		{255, "cc ff"},
		{256, "cd 01 00"},
		{65535, "cd ff ff"},
		{65536, "ce 00 01 00 00"},
		{4294967295LL, "ce ff ff ff ff"},
		{4294967296LL, "cf 00 00 00 01 00 00 00 00"},
		{INT64_MAX, "cf 7f ff ff ff ff ff ff ff"},
		{-1, "ff"},
		{-32, "e0"},
		{-33, "d0 df"},
		{-128, "d0 80"},
		{-129, "d1 ff 7f"},
		{-32768, "d1 80 00"},
		{-32769, "d2 ff ff 7f ff"},
		{INT32_MIN, "d2 80 00 00 00"},
		{(int64_t)INT32_MIN - 1, "d3 ff ff ff ff 7f ff ff ff"},
		{INT64_MIN, "d3 80 00 00 00 00 00 00 00"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ints); i++) {
		codec_put_int(&b, ints[i].i);
		PUT(&b, ints[i].hex, 0);
	}
	free(s);
	buf_fini(&b);
}

static void test_extra_key(void)
{
	const char *key = "__asgi_channel__";
	const char *chan = "daphne.response.JSKQQYqLSQ!MaDdrUYCGb";

	/* Without the key: the map gets one more entry, last. */
	struct laurel_msg *m = laurel_msg_new();
	laurel_msg_set_bool(m, "accept", true);
	struct buf b;
	buf_init(&b);
	codec_encode(m, key, &b);
	codec_put_str(&b, chan, strlen(chan));
	/* The captured {accept: true, __asgi_channel__: ...} of the catalog. */
	struct buf want;
	buf_init(&want);
	unhex(&want, "82 a6 61 63 63 65 70 74 c3 b0 5f 5f 61 73 67 69 5f 63 68 61 6e 6e 65 6c "
		     "5f 5f d9 25 64 61 70 68 6e 65 2e 72 65 73 70 6f 6e 73 65 2e 4a 53 4b 51 "
		     "51 59 71 4c 53 51 21 4d 61 44 64 72 55 59 43 47 62");
	CHECK_MEM(b.data, b.len, want.data, want.len);
	laurel_msg_free(m);

	/* With the key already there (in the middle): replaced, moved last. */
	m = laurel_msg_new();
	laurel_msg_set_int(m, "a", 1);
	laurel_msg_set_text(m, key, "old!x");
	laurel_msg_set_int(m, "b", 2);
	buf_reset(&b);
	codec_encode(m, key, &b);
	codec_put_str(&b, "new!y", 5);
	struct laurel_msg *d = NULL;
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &d), 0);
	if (d) {
		const struct laurel_value *r = laurel_msg_croot(d);
		CHECK_EQ(r->u.map.len, 3);
		CHECK_STR(r->u.map.items[0].key.ptr, "a");
		CHECK_STR(r->u.map.items[1].key.ptr, "b");
		CHECK_STR(r->u.map.items[2].key.ptr, key);
		CHECK_STR(laurel_msg_get_text(d, key, NULL), "new!y");
	}
	laurel_msg_free(d);
	/* The message itself is unchanged. */
	CHECK_STR(laurel_msg_get_text(m, key, NULL), "old!x");

	/* Any value type can follow. */
	buf_reset(&b);
	codec_encode(m, "n", &b);
	codec_put_int(&b, 300);
	buf_reset(&want);
	unhex(&want, "84 a1 61 01 b0 5f 5f 61 73 67 69 5f 63 68 61 6e 6e 65 6c 5f 5f a5 6f 6c 64 "
		     "21 78 a1 62 02 a1 6e cd 01 2c");
	CHECK_MEM(b.data, b.len, want.data, want.len);
	/* Without extra_key it is the plain encoding. */
	buf_reset(&b);
	codec_encode(m, NULL, &b);
	char *enc;
	size_t len;
	laurel_msg_encode(m, &enc, &len);
	CHECK_MEM(b.data, b.len, enc, len);
	free(enc);
	laurel_msg_free(m);

	/* An empty message with the key: a one-entry map. */
	m = laurel_msg_new();
	buf_reset(&b);
	codec_encode(m, key, &b);
	codec_put_str(&b, "x", 1);
	CHECK_EQ((unsigned char)b.data[0], 0x81);
	d = NULL;
	CHECK_EQ(laurel_msg_decode(b.data, b.len, NULL, &d), 0);
	CHECK_STR(d ? laurel_msg_get_text(d, key, NULL) : NULL, "x");
	laurel_msg_free(d);
	laurel_msg_free(m);

	buf_fini(&want);
	buf_fini(&b);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s channels1-message-catalog.txt\n", argv[0]);
		return 2;
	}
	test_catalog(argv[1]);
	test_widths();
	test_reject();
	test_put();
	test_extra_key();
	return test_done();
}
