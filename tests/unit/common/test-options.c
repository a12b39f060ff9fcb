#include "common/options.h"
#include "common/log.h"
#include "common/util.h"
#include "tests/lib/test.h"

#include <stdarg.h>
#include <stdlib.h>

struct cfg {
	bool flag;
	int num;
	size_t size;
	int mode;
	char *text;
	struct option_list items;
	struct option_list urls;
	int verbosity;
};

#define C(field) offsetof(struct cfg, field)

static const struct option opts[] = {
	{"flag", 'f', OPTION_FLAG, C(flag), 0, 0, NULL, NULL, NULL, "A flag."},
	{"num", 'n', OPTION_INT, C(num), -5, 100, "7", "TEST_OPTIONS_NUM", "N", "A number."},
	{"size", 's', OPTION_SIZE, C(size), 16, 1LL << 40, "4k", NULL, "BYTES", "A size."},
	{"mode", 0, OPTION_MODE, C(mode), 0, 0777, "660", NULL, "MODE", "A mode."},
	{"long-name", 't', OPTION_STRING, C(text), 1, 0, "plain", "TEST_OPTIONS_TEXT", "TEXT",
	 "A string."},
	{"item", 'i', OPTION_LIST, C(items), 0, 0, NULL, NULL, "ITEM", "An item (repeatable)."},
	{"url", 0, OPTION_URLS, C(urls), 0, 0, "redis://default:6379", "TEST_OPTIONS_URL", "URL",
	 "A URL (repeatable)."},
	{"verbosity|verbose", 'v', OPTION_VERBOSITY, C(verbosity), 0, 2, "1", NULL, "N",
	 OPTION_VERBOSITY_HELP},
};

/* The same verbosity with the defaults of laurel-worker (0) and the tool (-1: quiet). */
static const struct option worker_opts[] = {
	{"verbosity|verbose", 'v', OPTION_VERBOSITY, C(verbosity), 0, 2, "0", NULL, "N",
	 OPTION_VERBOSITY_HELP},
	{"flag", 'f', OPTION_FLAG, C(flag), 0, 0, NULL, NULL, NULL, "A flag."},
};
static const struct option tool_opts[] = {
	{"verbosity|verbose", 'v', OPTION_VERBOSITY, C(verbosity), -1, 2, "-1", NULL, "N",
	 OPTION_VERBOSITY_HELP},
	{"flag", 'f', OPTION_FLAG, C(flag), 0, 0, NULL, NULL, NULL, "A flag."},
};

struct run {
	struct cfg cfg;
	int rc;
	char err[256];
	char *argv[32];
	char *pos[32];
	int npos;
	bool given[ARRAY_SIZE(opts)];
};

/* Parses the NULL-terminated arguments (after a program name) with table t. */
static void parse_with(struct run *r, const struct option *t, size_t n, ...)
{
	va_list ap;
	int argc = 0;
	memset(r, 0, sizeof(*r));
	r->argv[argc++] = xstrdup("prog");
	va_start(ap, n);
	for (const char *a; (a = va_arg(ap, const char *));)
		r->argv[argc++] = xstrdup(a);
	va_end(ap);
	r->rc = options_parse(t, n, &r->cfg, argc, r->argv, r->pos, &r->npos, r->given, r->err,
			      sizeof(r->err));
}

static void done_with(struct run *r, const struct option *t, size_t n)
{
	options_free(t, n, &r->cfg);
	for (size_t i = 0; i < ARRAY_SIZE(r->argv) && r->argv[i]; i++)
		free(r->argv[i]);
}

#define parse(r, ...) parse_with((r), opts, ARRAY_SIZE(opts), __VA_ARGS__, (const char *)NULL)
#define done(r) done_with((r), opts, ARRAY_SIZE(opts))

static void test_defaults(void)
{
	struct run r;
	parse_with(&r, opts, ARRAY_SIZE(opts), (const char *)NULL);
	CHECK_EQ(r.rc, 0);
	CHECK_EQ(r.npos, 0);
	CHECK(!r.cfg.flag);
	CHECK_EQ(r.cfg.num, 7);
	CHECK_EQ(r.cfg.size, 4096);
	CHECK_EQ(r.cfg.mode, 0660);
	CHECK_STR(r.cfg.text, "plain");
	CHECK_EQ(r.cfg.items.n, 0);
	CHECK(r.cfg.items.v == NULL);
	CHECK_EQ(r.cfg.urls.n, 1);
	CHECK_STR(r.cfg.urls.v[0], "redis://default:6379");
	CHECK(r.cfg.urls.v[1] == NULL);
	CHECK_EQ(r.cfg.verbosity, 1);
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		CHECK(!r.given[i]);
	done(&r);
}

static void test_long_and_short(void)
{
	struct run r;
	parse(&r, "--flag", "--num", "42", "--size=2M", "--mode", "0755", "--long-name", "x y",
	      "--item", "a", "--item=b", "--url", "unix:///tmp/r.sock");
	CHECK_EQ(r.rc, 0);
	CHECK(r.cfg.flag);
	CHECK_EQ(r.cfg.num, 42);
	CHECK_EQ(r.cfg.size, 2 << 20);
	CHECK_EQ(r.cfg.mode, 0755);
	CHECK_STR(r.cfg.text, "x y");
	CHECK_EQ(r.cfg.items.n, 2);
	CHECK_STR(r.cfg.items.v[0], "a");
	CHECK_STR(r.cfg.items.v[1], "b");
	CHECK_EQ(r.cfg.urls.n, 1);
	CHECK_STR(r.cfg.urls.v[0], "unix:///tmp/r.sock");
	CHECK(r.given[0] && r.given[1] && r.given[2] && r.given[3] && r.given[4]);
	CHECK(r.given[5] && r.given[6] && !r.given[7]);
	done(&r);

	/* Short forms: separate value, attached value, bundled flags ending in one that takes
	 * the rest of the argument. */
	parse(&r, "-n", "-3", "-s1G", "-ti", "-t", "last", "-fi", "one", "-fn5");
	CHECK_EQ(r.rc, 0);
	CHECK(r.cfg.flag);
	CHECK_EQ(r.cfg.num, 5);
	CHECK_EQ(r.cfg.size, 1LL << 30);
	CHECK_STR(r.cfg.text, "last"); /* the last one given wins */
	CHECK_EQ(r.cfg.items.n, 1);
	CHECK_STR(r.cfg.items.v[0], "one");
	done(&r);

	/* '-' and '_' are the same in long names (Daphne's --websocket_timeout); k, K, M. */
	parse(&r, "--long_name", "u", "--size", "3k", "--size", "5K");
	CHECK_EQ(r.rc, 0);
	CHECK_STR(r.cfg.text, "u");
	CHECK_EQ(r.cfg.size, 5 * 1024);
	done(&r);
}

static void test_operands(void)
{
	struct run r;
	parse(&r, "first", "-f", "second", "-", "--", "--num", "-v", "third");
	CHECK_EQ(r.rc, 0);
	CHECK(r.cfg.flag);
	CHECK_EQ(r.cfg.num, 7);
	CHECK_EQ(r.cfg.verbosity, 1);
	CHECK_EQ(r.npos, 6);
	if (r.npos == 6) {
		CHECK_STR(r.pos[0], "first");
		CHECK_STR(r.pos[1], "second");
		CHECK_STR(r.pos[2], "-");
		CHECK_STR(r.pos[3], "--num");
		CHECK_STR(r.pos[4], "-v");
		CHECK_STR(r.pos[5], "third");
	}
	done(&r);
}

static void test_environment(void)
{
	struct run r;
	setenv("TEST_OPTIONS_NUM", "-2", 1);
	setenv("TEST_OPTIONS_TEXT", "from env", 1);
	setenv("TEST_OPTIONS_URL", "redis://a:1, redis://b:2 unix:///c", 1);
	parse_with(&r, opts, ARRAY_SIZE(opts), (const char *)NULL);
	CHECK_EQ(r.rc, 0);
	CHECK_EQ(r.cfg.num, -2);
	CHECK_STR(r.cfg.text, "from env");
	CHECK_EQ(r.cfg.urls.n, 3);
	if (r.cfg.urls.n == 3) {
		CHECK_STR(r.cfg.urls.v[0], "redis://a:1");
		CHECK_STR(r.cfg.urls.v[1], "redis://b:2");
		CHECK_STR(r.cfg.urls.v[2], "unix:///c");
	}
	CHECK(r.given[1] && r.given[4] && r.given[6]); /* the environment counts as given */
	done(&r);

	/* The command line wins over the environment. */
	parse(&r, "--num", "9", "--url", "redis://cli:1");
	CHECK_EQ(r.cfg.num, 9);
	CHECK_EQ(r.cfg.urls.n, 1);
	CHECK_STR(r.cfg.urls.v[0], "redis://cli:1");
	done(&r);

	/* An empty (or blank) variable is not set; a bad one is named in the error. */
	setenv("TEST_OPTIONS_URL", " , ", 1);
	setenv("TEST_OPTIONS_NUM", "many", 1);
	parse_with(&r, opts, ARRAY_SIZE(opts), (const char *)NULL);
	CHECK_EQ(r.rc, -1);
	CHECK_STR(r.err, "the environment variable TEST_OPTIONS_NUM must be a whole number from -5 "
			 "to 100, not \"many\"");
	done(&r);
	unsetenv("TEST_OPTIONS_NUM");
	parse_with(&r, opts, ARRAY_SIZE(opts), (const char *)NULL);
	CHECK_EQ(r.rc, 0);
	CHECK_EQ(r.cfg.urls.n, 1);
	CHECK_STR(r.cfg.urls.v[0], "redis://default:6379");
	done(&r);
	unsetenv("TEST_OPTIONS_TEXT");
	unsetenv("TEST_OPTIONS_URL");
}

static void test_urls(void)
{
	struct run r;
	/* Commas and spaces separate URLs; a comma not followed by a scheme stays in its URL (a
	 * Sentinel shard's sentinels); repeats add up. */
	parse(&r, "--url", "redis+sentinel://h1:26379,h2:26379/mymaster,redis://x:1",
	      "--url=redis://y:2,  redis+sentinel://s1,s2:5/m?db=3");
	CHECK_EQ(r.rc, 0);
	CHECK_EQ(r.cfg.urls.n, 4);
	if (r.cfg.urls.n == 4) {
		CHECK_STR(r.cfg.urls.v[0], "redis+sentinel://h1:26379,h2:26379/mymaster");
		CHECK_STR(r.cfg.urls.v[1], "redis://x:1");
		CHECK_STR(r.cfg.urls.v[2], "redis://y:2");
		CHECK_STR(r.cfg.urls.v[3], "redis+sentinel://s1,s2:5/m?db=3");
	}
	done(&r);

	parse(&r, "--url", " ,, ");
	CHECK_EQ(r.rc, -1);
	CHECK_STR(r.err, "--url holds no URL");
	done(&r);

	/* Passwords in option values are scrubbed from argv once copied; operands are left. */
	parse(&r, "--url", "redis://:secret@h:1", "redis://:operand@h:2");
	CHECK_EQ(r.rc, 0);
	CHECK_STR(r.cfg.urls.v[0], "redis://:secret@h:1");
	CHECK_STR(r.argv[2], "redis://:******@h:1");
	CHECK_STR(r.argv[3], "redis://:operand@h:2");
	done(&r);
}

static void test_errors(void)
{
	static const struct {
		const char *args[3];
		const char *err;
	} cases[] = {
		{{"--num", "101"}, "--num must be a whole number from -5 to 100, not \"101\""},
		{{"-n", "-6"}, "-n must be a whole number from -5 to 100, not \"-6\""},
		{{"--num=7x"}, "--num must be a whole number from -5 to 100, not \"7x\""},
		{{"--num="}, "--num must be a whole number from -5 to 100, not \"\""},
		{{"--num", "99999999999999999999"},
		 "--num must be a whole number from -5 to 100, not \"99999999999999999999\""},
		{{"--size", "8"},
		 "--size must be a whole number from 16 to 1099511627776, not \"8\""},
		{{"-s", "2T"}, "-s must be a whole number from 16 to 1099511627776, not \"2T\""},
		{{"--size", "8589934592G"},
		 "--size must be a whole number from 16 to 1099511627776, not \"8589934592G\""},
		{{"--mode", "800"}, "--mode must be an octal mode from 0 to 511, not \"800\""},
		{{"--long-name", ""}, "--long-name must not be empty"},
		{{"--bogus"}, "unknown option \"--bogus\" (see --help)"},
		{{"-x"}, "unknown option -x (see --help)"},
		{{"-fx"}, "unknown option -x (see --help)"},
		{{"--num"}, "option --num needs a value (N)"},
		{{"-n"}, "option -n needs a value (N)"},
		{{"--flag=yes"}, "option --flag takes no value"},
		{{"--verbosity", "3"}, "--verbosity must be a whole number from 0 to 2, not \"3\""},
		{{"-v", "-1"}, "-v must be a whole number from 0 to 2, not \"-1\""},
		{{"-v7"}, "-v must be a whole number from 0 to 2, not \"7\""},
		{{"-v2x"}, "-v must be a whole number from 0 to 2, not \"2x\""},
		{{"--verbosity=high"},
		 "--verbosity must be a whole number from 0 to 2, not \"high\""},
		{{"--verbose="}, "--verbosity must be a whole number from 0 to 2, not \"\""},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct run r;
		parse(&r, cases[i].args[0], cases[i].args[1], cases[i].args[2]);
		CHECK_EQ(r.rc, -1);
		CHECK_STR(r.err, cases[i].err);
		done(&r);
	}
}

/* A table's own mistake is named as such; given may be NULL. */
static void test_bad_default(void)
{
	static const struct option bad[] = {
		{"num", 'n', OPTION_INT, C(num), 0, 10, "11", NULL, "N", "A number."},
	};
	struct cfg cfg = {0};
	char *argv[] = {"prog", NULL}, *pos[2], err[128];
	int npos = -1;
	CHECK_EQ(options_parse(bad, ARRAY_SIZE(bad), &cfg, 1, argv, pos, &npos, NULL, err,
			       sizeof(err)),
		 -1);
	CHECK_STR(err, "the default of --num must be a whole number from 0 to 10, not \"11\"");
	CHECK_EQ(npos, 0);
	char *argv2[] = {"prog", "-n", "3", NULL};
	CHECK_EQ(options_parse(bad, ARRAY_SIZE(bad), &cfg, 3, argv2, pos, &npos, NULL, err,
			       sizeof(err)),
		 0);
	CHECK_EQ(cfg.num, 3);
	options_free(bad, ARRAY_SIZE(bad), &cfg);
}

static void test_verbosity(void)
{
	static const struct {
		const char *args[4];
		int level;  /* with the default 1 */
		int worker; /* with the default 0 */
		int tool;   /* with the default -1 */
		int operands;
	} cases[] = {
		{{NULL}, 1, 0, -1, 0},
		{{"-v", "0"}, 0, 0, 0, 0},
		{{"-v0"}, 0, 0, 0, 0},
		{{"--verbosity", "2"}, 2, 2, 2, 0},
		{{"--verbosity=2"}, 2, 2, 2, 0},
		{{"--verbose", "1"}, 1, 1, 1, 0},
		{{"-v"}, 2, 1, 1, 0},
		{{"--verbose"}, 2, 1, 1, 0},
		{{"--verbosity"}, 2, 1, 1, 0},
		{{"-vv"}, 2, 2, 2, 0},
		{{"-v", "-v"}, 2, 2, 2, 0},
		{{"-vvv"}, 2, 2, 2, 0}, /* up to the highest */
		{{"--verbose", "--verbose"}, 2, 2, 2, 0},
		{{"-v", "0", "-v"}, 1, 1, 1, 0},
		/* Not a number: an operand, not eaten. */
		{{"-v", "stats"}, 2, 1, 1, 1},
		{{"--verbose", "stats", "x"}, 2, 1, 1, 2},
		{{"stats", "-v"}, 2, 1, 1, 1},
		{{"-v", "--", "1"}, 2, 1, 1, 1},
		/* Bundled with other short flags. */
		{{"-fv"}, 2, 1, 1, 0},
		{{"-vf"}, 2, 1, 1, 0},
		{{"-fv", "0"}, 0, 0, 0, 0},
		{{"-fv2"}, 2, 2, 2, 0},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *const *a = cases[i].args;
		struct run r;
		parse(&r, a[0], a[1], a[2], a[3]);
		CHECK_EQ(r.rc, 0);
		if (r.rc)
			fprintf(stderr, "case %zu: %s\n", i, r.err);
		CHECK_EQ(r.cfg.verbosity, cases[i].level);
		CHECK_EQ(r.npos, cases[i].operands);
		CHECK(r.given[7] == (a[0] != NULL));
		done(&r);
		parse_with(&r, worker_opts, ARRAY_SIZE(worker_opts), a[0], a[1], a[2], a[3],
			   (const char *)NULL);
		CHECK_EQ(r.rc, 0);
		CHECK_EQ(r.cfg.verbosity, cases[i].worker);
		done_with(&r, worker_opts, ARRAY_SIZE(worker_opts));
		parse_with(&r, tool_opts, ARRAY_SIZE(tool_opts), a[0], a[1], a[2], a[3],
			   (const char *)NULL);
		CHECK_EQ(r.rc, 0);
		CHECK_EQ(r.cfg.verbosity, cases[i].tool);
		CHECK_EQ(r.npos, cases[i].operands);
		done_with(&r, tool_opts, ARRAY_SIZE(tool_opts));
	}

	/* The tool may be told its quiet default; the others go no lower than 0. */
	struct run r;
	parse_with(&r, tool_opts, ARRAY_SIZE(tool_opts), "-v", "-1", (const char *)NULL);
	CHECK_EQ(r.rc, 0);
	CHECK_EQ(r.cfg.verbosity, -1);
	CHECK_EQ(r.npos, 0);
	done_with(&r, tool_opts, ARRAY_SIZE(tool_opts));

	/* One mapping to log levels for every program. */
	CHECK_EQ(log_level_for(-1), LOG_ERROR - 1);
	CHECK_EQ(log_level_for(0), LOG_WARN);
	CHECK_EQ(log_level_for(1), LOG_INFO);
	CHECK_EQ(log_level_for(2), LOG_DEBUG);
	CHECK_EQ(log_level_for(5), LOG_DEBUG);
}

static void test_help(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	options_print(f, opts, ARRAY_SIZE(opts));
	fclose(f);
	CHECK_STR(
		text,
		"  -f, --flag              A flag.\n"
		"  -n, --num N             A number. Environment: TEST_OPTIONS_NUM. Default: 7.\n"
		"  -s, --size BYTES        A size. Default: 4k.\n"
		"      --mode MODE         A mode. Default: 660.\n"
		"  -t, --long-name TEXT    A string. Environment: TEST_OPTIONS_TEXT. Default:\n"
		"                          \"plain\".\n"
		"  -i, --item ITEM         An item (repeatable).\n"
		"      --url URL           A URL (repeatable). Environment: TEST_OPTIONS_URL.\n"
		"                          Default: redis://default:6379.\n"
		"  -v, --verbosity, --verbose [N]\n"
		"                          How much to log on stderr: 0 warnings and errors, 1\n"
		"                          also information, 2 also debug. A -v not followed by a\n"
		"                          number is one more than the default, -vv two more.\n"
		"                          Default: 1.\n");
	free(text);

	/* Items and wrapping: a left column too wide puts the text on the next line; a word that
	 * does not fit goes to the next line, never cut. */
	text = NULL;
	f = open_memstream(&text, &len);
	options_item(f, "a-left-column-too-wide-for-its-place", "short");
	options_wrap(f, "one two three", 4, 78);
	fclose(f);
	CHECK_STR(text, "  a-left-column-too-wide-for-its-place\n"
			"                          short\n"
			"\n    one two three\n");
	free(text);
}

int main(void)
{
	unsetenv("TEST_OPTIONS_NUM");
	unsetenv("TEST_OPTIONS_TEXT");
	unsetenv("TEST_OPTIONS_URL");
	test_defaults();
	test_long_and_short();
	test_operands();
	test_environment();
	test_urls();
	test_errors();
	test_bad_default();
	test_verbosity();
	test_help();
	return test_done();
}
