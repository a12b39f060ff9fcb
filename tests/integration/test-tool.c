/* Runs the built `laurel` tool (argv[1]) against a real redis-server and checks what it did with
 * the public layer API: messages sent from JSON are read back with laurel_layer_receive and their
 * types and values checked; errors give the documented exit codes and one clear line. */
#include "tests/lib/test.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "laurel/layer.h"
#include "laurel/message.h"
#include "common/util.h"

/* A run of the tool gets this long before it is killed. */
#define RUN_TIMEOUT_MS 10000

struct run {
	char cmd[1024]; /* the command line, for failure messages */
	int status;	/* exit code, or 128 + signal */
	char out[16384];
	char err[4096];
	int64_t ms;
};

static const char *tool_path;
static struct test_redis redis;

/* Appends what can be read from fd to dst (cap bytes, NUL-terminated); returns false at EOF. */
static bool drain(int fd, char *dst, size_t cap)
{
	size_t len = strlen(dst);
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	size_t room = cap - 1 - len;
	size_t take = (size_t)n < room ? (size_t)n : room;
	memcpy(dst + len, chunk, take);
	dst[len + take] = '\0';
	return true;
}

/* Runs the tool with args (NULL-terminated), with LAUREL_LAYER set to env_layer (unset if NULL)
 * and input on stdin (empty if NULL), and collects its output and exit status. */
static void run_tool(struct run *r, const char *env_layer, const char *input,
		     const char *const *args)
{
	int out[2], err[2], in[2];
	size_t nargs = 0;
	while (args[nargs])
		nargs++;
	const char **argv = xcalloc(nargs + 2, sizeof(*argv));
	argv[0] = tool_path;
	memcpy(argv + 1, args, nargs * sizeof(*argv));

	memset(r, 0, sizeof(*r));
	size_t n = (size_t)snprintf(r->cmd, sizeof(r->cmd), "%slaurel",
				    env_layer ? "LAUREL_LAYER=... " : "");
	for (size_t i = 0; i < nargs && n < sizeof(r->cmd); i++)
		n += (size_t)snprintf(r->cmd + n, sizeof(r->cmd) - n, " '%s'", args[i]);

	if (pipe(out) < 0 || pipe(err) < 0 || pipe(in) < 0) {
		perror("pipe");
		exit(2);
	}
	int64_t start = util_now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(in[0]), close(in[1]), close(out[0]), close(out[1]), close(err[0]),
			close(err[1]);
		if (env_layer)
			setenv("LAUREL_LAYER", env_layer, 1);
		else
			unsetenv("LAUREL_LAYER");
		execv(tool_path, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", tool_path, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	if (input && write(in[1], input, strlen(input)) != (ssize_t)strlen(input))
		perror("write to the tool's stdin");
	close(in[1]);

	struct pollfd pfd[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
	int open_fds = 2;
	while (open_fds > 0) {
		int left = (int)(start + RUN_TIMEOUT_MS - util_now_ms());
		if (left <= 0 || poll(pfd, 2, left) == 0) {
			fprintf(stderr, "%s: still running after %d ms, killing it\n", r->cmd,
				RUN_TIMEOUT_MS);
			kill(pid, SIGKILL);
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			bool more = i == 0 ? drain(pfd[i].fd, r->out, sizeof(r->out))
					   : drain(pfd[i].fd, r->err, sizeof(r->err));
			if (!more) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	int status;
	waitpid(pid, &status, 0);
	r->ms = util_now_ms() - start;
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	free(argv);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* The tool on the test's Redis. */
#define TOOL(r, ...) run_tool((r), NULL, NULL, ARGS("--layer", redis.url, __VA_ARGS__))
/* The tool with nothing but the given arguments. */
#define TOOL_BARE(r, ...) run_tool((r), NULL, NULL, ARGS(__VA_ARGS__))

#define CHECK_EXIT(r, code)                                                                        \
	do {                                                                                       \
		test_checks++;                                                                     \
		if ((r)->status != (code))                                                         \
			test_fail(__FILE__, __LINE__,                                              \
				  "%s: exit status %d, expected %d\n  stdout: %s\n  stderr: %s",   \
				  (r)->cmd, (r)->status, (code), (r)->out, (r)->err);              \
	} while (0)

#define CHECK_HAS(hay, needle)                                                                     \
	do {                                                                                       \
		const char *_h = (hay), *_n = (needle);                                            \
		test_checks++;                                                                     \
		if (!strstr(_h, _n))                                                               \
			test_fail(__FILE__, __LINE__, "%s does not contain \"%s\": \"%s\"", #hay,  \
				  _n, _h);                                                         \
	} while (0)

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A failure: the documented exit code and exactly one stderr line "laurel: ...", nothing on
 * stdout. */
#define CHECK_FAILS(r, code)                                                                       \
	do {                                                                                       \
		CHECK_EXIT(r, code);                                                               \
		CHECK_EQ(count_lines((r)->err), 1);                                                \
		CHECK_EQ(strncmp((r)->err, "laurel: ", 8), 0);                                     \
		CHECK_STR((r)->out, "");                                                           \
	} while (0)

/* The value of "name value" in the tool's stats output, or -999 if it is missing. */
static long long stat_of(const char *out, const char *name)
{
	size_t len = strlen(name);
	for (const char *line = out; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, name, len) == 0 && line[len] == ' ')
			return strtoll(line + len + 1, NULL, 10);
	return -999;
}

static bool has_line(const char *out, const char *want)
{
	size_t len = strlen(want);
	for (const char *line = out; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL)
		if (strncmp(line, want, len) == 0 && (line[len] == '\n' || line[len] == '\0'))
			return true;
	return false;
}

/* Receives one message from channel (waiting up to 2 s) into r; returns how many came (0/1). */
static size_t receive_one(struct laurel_layer *l, const char *channel, struct laurel_received *r,
			  int timeout_ms)
{
	size_t got = 0;
	const char *chans[] = {channel};
	int rc = laurel_layer_receive(l, chans, 1, timeout_ms, r, 1, &got);
	CHECK_EQ(rc, 0);
	if (rc != 0)
		fprintf(stderr, "  receive on %s: %s\n", channel, laurel_layer_error(l));
	return got;
}

static struct laurel_layer *new_layer(const char *const *urls, size_t nurls)
{
	struct laurel_layer *l = NULL;
	char err[256] = "";
	struct laurel_layer_options o = {.urls = urls, .nurls = nurls};
	int rc = laurel_layer_new(&l, &o, err, sizeof(err));
	CHECK_EQ(rc, 0);
	if (rc) {
		fprintf(stderr, "laurel_layer_new: %s\n", err);
		exit(1);
	}
	return l;
}

static void test_help(void)
{
	static const char *const names[] = {"send",  "group-send", "group-members", "group-history",
					    "stats", "flush",	   "help"};
	static const char *const options[] = {"--layer",	"--prefix",   "--expiry",
					      "--group-expiry", "--capacity", "--verbose",
					      "--group-history", "LAUREL_GROUP_HISTORY",
					      "--help",		"--version",  "LAUREL_LAYER"};
	struct run r;
	TOOL_BARE(&r, "--help");
	CHECK_EXIT(&r, 0);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char want[64];
		snprintf(want, sizeof(want), "  %s ", names[i]);
		CHECK_HAS(r.out, want);
	}
	for (size_t i = 0; i < ARRAY_SIZE(options); i++)
		CHECK_HAS(r.out, options[i]);
	CHECK_HAS(r.out, "Exit status");
	CHECK_HAS(r.out, "  3  ");
	CHECK_HAS(r.out, "$bytes");

	struct run h;
	TOOL_BARE(&h, "help");
	CHECK_EXIT(&h, 0);
	CHECK_STR(h.out, r.out);

	TOOL_BARE(&r, "send", "--help");
	CHECK_EXIT(&r, 0);
	CHECK_HAS(r.out, "Usage: laurel [OPTIONS] send CHANNEL JSON");
	TOOL_BARE(&h, "help", "send");
	CHECK_EXIT(&h, 0);
	CHECK_STR(h.out, r.out);

	TOOL_BARE(&r, "--version");
	CHECK_EXIT(&r, 0);
	CHECK_EQ(strncmp(r.out, "laurel ", 7), 0);

	/* Usage errors. */
	run_tool(&r, NULL, NULL, ARGS(NULL));
	CHECK_FAILS(&r, 2);
	TOOL_BARE(&r, "frobnicate");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "unknown command \"frobnicate\"");
	TOOL_BARE(&r, "help", "frobnicate");
	CHECK_FAILS(&r, 2);
	TOOL_BARE(&r, "send", "x");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "CHANNEL JSON");
	TOOL_BARE(&r, "flush", "extra");
	CHECK_FAILS(&r, 2);
	TOOL_BARE(&r, "--bogus", "flush");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "--bogus");
	TOOL_BARE(&r, "--capacity", "0", "flush");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "--capacity must be a whole number from 1 to");
	TOOL_BARE(&r, "--expiry=abc", "flush");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "\"abc\"");
	TOOL_BARE(&r, "flush", "--capacity");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "needs a value");
	TOOL_BARE(&r, "--prefix", "", "flush");
	CHECK_FAILS(&r, 2);
	TOOL_BARE(&r, "--layer", "http://nope", "flush");
	CHECK_FAILS(&r, 2);
	TOOL_BARE(&r, "--layer", "memory://", "stats");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "Redis URL");
}

static void test_send_types(struct laurel_layer *l)
{
	struct run r;
	struct laurel_received m = {0};
	TOOL(&r, "send", "tool.types",
	     "{\"text\": \"h\\u00e9llo\", \"nul\": \"a\\u0000b\", \"n\": -42, "
	     "\"big\": 9223372036854775807, \"small\": -9223372036854775808, \"f\": 1.5, "
	     "\"t\": true, \"no\": false, \"nil\": null, \"list\": [1, \"two\", [3.25], {}], "
	     "\"map\": {\"inner\": {\"deep\": [false]}}, \"raw\": {\"$bytes\": \"AAEC/w==\"}, "
	     "\"empty\": {\"$bytes\": \"\"}}");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "");
	CHECK_STR(r.err, "");
	if (receive_one(l, "tool.types", &m, 2000) != 1) {
		CHECK(!"no message on tool.types");
		return;
	}
	CHECK_STR(m.channel, "tool.types");
	const struct laurel_msg *msg = m.msg;
	const struct laurel_value *root = laurel_msg_croot(msg);
	static const char *const order[] = {"text", "nul", "n",	   "big", "small", "f",	   "t",
					    "no",   "nil", "list", "map", "raw",   "empty"};
	CHECK_EQ(root->type, LAUREL_MAP);
	CHECK_EQ(root->u.map.len, ARRAY_SIZE(order));
	for (size_t i = 0; i < ARRAY_SIZE(order) && i < root->u.map.len; i++)
		CHECK_STR(root->u.map.items[i].key.ptr, order[i]);

	size_t len = 0;
	CHECK_STR(laurel_msg_get_text(msg, "text", &len), "h\xc3\xa9llo");
	CHECK_EQ(len, 6);
	const char *nul = laurel_msg_get_text(msg, "nul", &len);
	CHECK_MEM(nul, len, "a\0b", 3);
	int64_t i64 = 0;
	CHECK_EQ(laurel_msg_get_int(msg, "n", &i64), 0);
	CHECK_EQ(i64, -42);
	CHECK_EQ(laurel_msg_get_int(msg, "big", &i64), 0);
	CHECK(i64 == INT64_MAX);
	CHECK_EQ(laurel_msg_get_int(msg, "small", &i64), 0);
	CHECK(i64 == INT64_MIN);
	double d = 0;
	CHECK_EQ(laurel_msg_get_double(msg, "f", &d), 0);
	CHECK(d == 1.5);
	bool b = false;
	CHECK_EQ(laurel_msg_get_bool(msg, "t", &b), 0);
	CHECK_EQ(b, true);
	CHECK_EQ(laurel_msg_get_bool(msg, "no", &b), 0);
	CHECK_EQ(b, false);
	const struct laurel_value *v = laurel_msg_get(msg, "nil");
	CHECK(v && v->type == LAUREL_NIL);

	v = laurel_msg_get(msg, "list");
	CHECK(v && v->type == LAUREL_LIST && v->u.list.len == 4);
	if (v && v->type == LAUREL_LIST && v->u.list.len == 4) {
		const struct laurel_value *it = v->u.list.items;
		CHECK_EQ(it[0].type, LAUREL_INT);
		CHECK_EQ(it[0].u.i, 1);
		CHECK_EQ(it[1].type, LAUREL_TEXT);
		CHECK_STR(it[1].u.s.ptr, "two");
		CHECK_EQ(it[2].type, LAUREL_LIST);
		CHECK(it[2].u.list.len == 1 && it[2].u.list.items[0].type == LAUREL_DOUBLE &&
		      it[2].u.list.items[0].u.d == 3.25);
		CHECK_EQ(it[3].type, LAUREL_MAP);
		CHECK_EQ(it[3].u.map.len, 0);
	}
	v = laurel_map_get(laurel_map_get(laurel_msg_get(msg, "map"), "inner"), "deep");
	CHECK(v && v->type == LAUREL_LIST && v->u.list.len == 1 &&
	      v->u.list.items[0].type == LAUREL_BOOL && !v->u.list.items[0].u.b);

	const void *raw = laurel_msg_get_bytes(msg, "raw", &len);
	CHECK(raw != NULL);
	CHECK_MEM(raw, len, "\x00\x01\x02\xff", 4);
	CHECK(laurel_msg_get_text(msg, "raw", NULL) == NULL);
	raw = laurel_msg_get_bytes(msg, "empty", &len);
	CHECK(raw != NULL);
	CHECK_EQ(len, 0);
	laurel_received_fini(&m);

	/* The message from stdin ("-"), over several lines. */
	run_tool(&r, NULL, "{\n  \"from\": \"stdin\",\n  \"bytes\": {\"$bytes\": \"aGk=\"}\n}\n",
		 ARGS("--layer", redis.url, "send", "tool.stdin", "-"));
	CHECK_EXIT(&r, 0);
	if (receive_one(l, "tool.stdin", &m, 2000) == 1) {
		CHECK_STR(laurel_msg_get_text(m.msg, "from", NULL), "stdin");
		raw = laurel_msg_get_bytes(m.msg, "bytes", &len);
		CHECK_MEM(raw, len, "hi", 2);
		laurel_received_fini(&m);
	} else {
		CHECK(!"no message on tool.stdin");
	}
}

static void test_dry_run(void)
{
	/* Nothing listens on the layer: --dry-run must not need it. */
	char dead[64];
	snprintf(dead, sizeof(dead), "redis://127.0.0.1:%d", test_free_port());
	static const char json[] =
		"{\"a\":\"x\",\"b\":{\"$bytes\":\"AAEC/w==\"},\"c\":[1,-2.5,true,"
		"null,{}],\"d\":{\"e\":{\"$bytes\":\"\"}},\"f\":\"\\u0000\"}";
	struct run r;
	run_tool(&r, NULL, NULL, ARGS("--layer", dead, "send", "--dry-run", "x!y", json));
	CHECK_EXIT(&r, 0);
	char want[256];
	snprintf(want, sizeof(want), "%s\n", json);
	CHECK_STR(r.out, want);
	run_tool(&r, NULL, NULL,
		 ARGS("--layer", dead, "-n", "group-send", "g",
		      "{ \"x\" : { \"$bytes\" : \"aGk=\" } }"));
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "{\"x\":{\"$bytes\":\"aGk=\"}}\n");
	/* Only for the commands that send. */
	run_tool(&r, NULL, NULL, ARGS("--layer", redis.url, "--dry-run", "flush"));
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "--dry-run");
	/* Checks still apply. */
	run_tool(&r, NULL, NULL, ARGS("--layer", dead, "-n", "send", "bad name", "{}"));
	CHECK_FAILS(&r, 2);
}

static void test_process_channel(struct laurel_layer *l)
{
	struct run r;
	struct laurel_received m = {0};
	TOOL(&r, "send", "tool.response.abc!conn1", "{\"text\": \"to one connection\"}");
	CHECK_EXIT(&r, 0);
	if (receive_one(l, "tool.response.abc!", &m, 2000) != 1) {
		CHECK(!"no message on tool.response.abc!");
		return;
	}
	CHECK_STR(m.channel, "tool.response.abc!conn1");
	CHECK_STR(laurel_msg_get_text(m.msg, "text", NULL), "to one connection");
	CHECK(laurel_msg_get(m.msg, "__asgi_channel__") == NULL);
	laurel_received_fini(&m);
}

static void test_groups(struct laurel_layer *l)
{
	static const char *const members[] = {"tool.member.one", "tool.member.two",
					      "daphne.response.xyz!c1"};
	struct run r;
	for (size_t i = 0; i < ARRAY_SIZE(members); i++)
		CHECK_EQ(laurel_layer_group_add(l, "tool-room", members[i]), 0);

	TOOL(&r, "group-members", "tool-room");
	CHECK_EXIT(&r, 0);
	CHECK_EQ(count_lines(r.out), 4);
	CHECK_EQ(strncmp(r.out, "3\n", 2), 0);
	for (size_t i = 0; i < ARRAY_SIZE(members); i++)
		CHECK(has_line(r.out, members[i]));

	TOOL(&r, "group-send", "tool-room", "{\"text\": \"hello room\", \"n\": 7}");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "3\n");
	static const char *const queues[] = {"tool.member.one", "tool.member.two",
					     "daphne.response.xyz!"};
	for (size_t i = 0; i < ARRAY_SIZE(queues); i++) {
		struct laurel_received m = {0};
		if (receive_one(l, queues[i], &m, 2000) != 1) {
			test_fail(__FILE__, __LINE__, "no group message on %s", queues[i]);
			continue;
		}
		CHECK_STR(m.channel, members[i]);
		CHECK_STR(laurel_msg_get_text(m.msg, "text", NULL), "hello room");
		int64_t n = 0;
		CHECK_EQ(laurel_msg_get_int(m.msg, "n", &n), 0);
		CHECK_EQ(n, 7);
		laurel_received_fini(&m);
		CHECK_EQ(receive_one(l, queues[i], &m, 0), 0);
	}

	TOOL(&r, "group-members", "tool-empty");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "0\n");
	TOOL(&r, "group-send", "tool-empty", "{}");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "0\n");

	/* Two connections of one live laurel interface get one multicast message. */
	CHECK_EQ(laurel_layer_announce(l, "tool.iface.abc!", 60), 0);
	CHECK_EQ(laurel_layer_group_add(l, "tool-mc", "tool.iface.abc!x"), 0);
	CHECK_EQ(laurel_layer_group_add(l, "tool-mc", "tool.iface.abc!y"), 0);
	TOOL(&r, "group-send", "tool-mc", "{\"text\": \"both\"}");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "2\n");
	struct laurel_received m = {0};
	if (receive_one(l, "tool.iface.abc!", &m, 2000) == 1) {
		CHECK_EQ(m.nrecipients, 2);
		CHECK_STR(laurel_msg_get_text(m.msg, "text", NULL), "both");
		laurel_received_fini(&m);
	} else {
		CHECK(!"no multicast message on tool.iface.abc!");
	}
	CHECK_EQ(receive_one(l, "tool.iface.abc!", &m, 0), 0);

	TOOL(&r, "stats");
	CHECK_EXIT(&r, 0);
	CHECK_EQ(stat_of(r.out, "interfaces"), 1);
	CHECK(has_line(r.out, "interface tool.iface.abc!"));
	CHECK_EQ(laurel_layer_withdraw(l, "tool.iface.abc!"), 0);
}

/* --group-history: group-send says where the message went, group-history shows the kept ones
 * and answers a reconnecting client's question (exit 1 when it cannot be answered). */
static void test_group_history(void)
{
	struct run r;
	char epoch[32] = "";
#define HTOOL(r, ...)                                                                             \
	run_tool((r), NULL, NULL,                                                                  \
		 ARGS("--layer", redis.url, "--group-history", "tool-h*=3/600", __VA_ARGS__))
	for (int i = 1; i <= 4; i++) {
		char json[64], want[64];
		snprintf(json, sizeof(json), "{\"text\": \"m%d\"}", i);
		HTOOL(&r, "group-send", "tool-hist", json);
		CHECK_EXIT(&r, 0);
		if (i == 1)
			sscanf(r.out, "0\nepoch %16s", epoch);
		snprintf(want, sizeof(want), "0\nepoch %s offset %d\n", epoch, i);
		CHECK_STR(r.out, want);
	}
	CHECK_EQ(strlen(epoch), 16);
	char want[512];
	HTOOL(&r, "group-history", "tool-hist");
	CHECK_EXIT(&r, 0);
	snprintf(want, sizeof(want),
		 "epoch %s offset 4 first 2\n2 {\"text\":\"m2\"}\n3 {\"text\":\"m3\"}\n"
		 "4 {\"text\":\"m4\"}\n",
		 epoch);
	CHECK_STR(r.out, want);
	HTOOL(&r, "group-history", "tool-hist", epoch, "3");
	CHECK_EXIT(&r, 0);
	snprintf(want, sizeof(want), "epoch %s offset 4 first 2\n4 {\"text\":\"m4\"}\n", epoch);
	CHECK_STR(r.out, want);
	HTOOL(&r, "group-history", "tool-hist", epoch, "0");
	CHECK_EXIT(&r, 1);
	CHECK_HAS(r.err, "no longer kept");
	HTOOL(&r, "group-history", "tool-hist", "0000000000000000", "4");
	CHECK_EXIT(&r, 1);
	CHECK_HAS(r.err, "epoch");
	HTOOL(&r, "group-history", "tool-hist", epoch);
	CHECK_EXIT(&r, 2);
	HTOOL(&r, "group-history", "tool-hist", epoch, "-1");
	CHECK_EXIT(&r, 2);
	HTOOL(&r, "group-history", "other-group");
	CHECK_EXIT(&r, 2);
	CHECK_HAS(r.err, "no history rule");
	HTOOL(&r, "group-history", "tool-hnone");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "epoch - offset 0 first 1\n");
	/* Without the rule, the same group is a plain group: no line about offsets. */
	TOOL(&r, "group-send", "tool-hist", "{}");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "0\n");
	run_tool(&r, NULL, NULL,
		 ARGS("--layer", redis.url, "--group-history", "tool-h*=0/600", "group-history",
		      "tool-hist"));
	CHECK_EXIT(&r, 2);
	CHECK_HAS(r.err, "bad history rule");
#undef HTOOL
}

static void test_stats_and_flush(struct laurel_layer *l)
{
	struct run g0, c0, r;
	TOOL(&g0, "stats");
	CHECK_EXIT(&g0, 0);
	CHECK(stat_of(g0.out, "messages_count") >= 0);
	CHECK(stat_of(g0.out, "channel_full_count") >= 0);
	CHECK(stat_of(g0.out, "interfaces") >= 0);
	TOOL(&c0, "stats", "tool.stats");
	CHECK_EXIT(&c0, 0);
	CHECK_EQ(stat_of(c0.out, "messages_pending"), 0);
	CHECK(stat_of(c0.out, "messages_count") >= 0);
	CHECK(stat_of(c0.out, "channel_full_count") >= 0);
	CHECK(stat_of(c0.out, "messages_max_age") != -999);

	for (int i = 0; i < 2; i++) {
		TOOL(&r, "send", "tool.stats", "{\"i\": 1}");
		CHECK_EXIT(&r, 0);
	}
	TOOL(&r, "stats", "tool.stats");
	CHECK_EXIT(&r, 0);
	CHECK_EQ(stat_of(r.out, "messages_pending"), 2);
	CHECK_EQ(stat_of(r.out, "messages_count"), stat_of(c0.out, "messages_count") + 2);
	CHECK(stat_of(r.out, "messages_max_age") >= 0);
	TOOL(&r, "stats");
	CHECK_EXIT(&r, 0);
	CHECK_EQ(stat_of(r.out, "messages_count"), stat_of(g0.out, "messages_count") + 2);

	/* A full channel: exit 1, and the refusal is counted. */
	TOOL(&r, "--capacity", "2", "send", "tool.stats", "{\"i\": 3}");
	CHECK_FAILS(&r, 1);
	CHECK_HAS(r.err, "full");
	CHECK_HAS(r.err, "tool.stats");
	TOOL(&r, "stats", "tool.stats");
	CHECK_EQ(stat_of(r.out, "messages_pending"), 2);
	CHECK_EQ(stat_of(r.out, "channel_full_count"), stat_of(c0.out, "channel_full_count") + 1);
	TOOL(&r, "stats");
	CHECK_EQ(stat_of(r.out, "channel_full_count"), stat_of(g0.out, "channel_full_count") + 1);

	CHECK_EQ(laurel_layer_group_add(l, "tool-flushed", "tool.stats"), 0);
	TOOL(&r, "flush");
	CHECK_EXIT(&r, 0);
	CHECK_STR(r.out, "");
	CHECK_STR(r.err, "");
	TOOL(&r, "stats");
	CHECK_EQ(stat_of(r.out, "messages_count"), 0);
	CHECK_EQ(stat_of(r.out, "channel_full_count"), 0);
	CHECK_EQ(stat_of(r.out, "interfaces"), 0);
	TOOL(&r, "stats", "tool.stats");
	CHECK_EQ(stat_of(r.out, "messages_count"), 0);
	CHECK_EQ(stat_of(r.out, "channel_full_count"), 0);
	CHECK_EQ(stat_of(r.out, "messages_pending"), 0);
	TOOL(&r, "group-members", "tool-flushed");
	CHECK_STR(r.out, "0\n");
	struct laurel_received m = {0};
	CHECK_EQ(receive_one(l, "tool.stats", &m, 0), 0);
	CHECK_STR(test_redis_cmd(&redis, "DBSIZE"), "0");
}

static void test_bad_input(void)
{
	struct run r;
	TOOL(&r, "send", "tool.bad", "{\"a\": }");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "line 1");
	CHECK_HAS(r.err, "column");
	run_tool(&r, NULL, "{\n\"a\": 1,\n\"b\": [1, 2,,]\n}",
		 ARGS("--layer", redis.url, "send", "tool.bad", "-"));
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "line 3");
	TOOL(&r, "send", "tool.bad", "");
	CHECK_FAILS(&r, 2);
	TOOL(&r, "send", "tool.bad", "{\"a\": 1, \"a\": 2}");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "duplicate");
	TOOL(&r, "send", "tool.bad", "{\"a\": 99999999999999999999}");
	CHECK_FAILS(&r, 2);

	static const char *const not_objects[] = {"[1, 2]", "\"text\"", "42",
						  "null",   "true",	"{\"$bytes\": \"AA==\"}"};
	for (size_t i = 0; i < ARRAY_SIZE(not_objects); i++) {
		TOOL(&r, "send", "tool.bad", not_objects[i]);
		CHECK_FAILS(&r, 2);
		CHECK_HAS(r.err, "must be a JSON object");
	}

	static const char *const bad_b64[] = {"{\"b\": {\"$bytes\": \"@@@@\"}}",
					      "{\"b\": {\"$bytes\": \"AAE\"}}",
					      "{\"b\": {\"$bytes\": \"A=AA\"}}",
					      "{\"b\": {\"$bytes\": 12}}",
					      "{\"b\": [{\"$bytes\": \"AA==\", \"x\": 1}]}",
					      "{\"b\": {\"$bytes\": \"AA=A\"}}"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_b64); i++) {
		TOOL(&r, "send", "tool.bad", bad_b64[i]);
		CHECK_FAILS(&r, 2);
		CHECK_HAS(r.err, "$bytes");
		CHECK_HAS(r.err, "$.b");
	}
	TOOL(&r, "send", "tool.bad", "{\"b\": {\"$bytes\": \"@@@@\"}}");
	CHECK_HAS(r.err, "base64");

	/* Receivers decode at most 32 levels of lists and maps, the top-level object included. */
	char deep[200];
	for (int levels = 32; levels <= 33; levels++) {
		size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"a\":");
		for (int i = 1; i < levels; i++)
			deep[n++] = '[';
		for (int i = 1; i < levels; i++)
			deep[n++] = ']';
		snprintf(deep + n, sizeof(deep) - n, "}");
		TOOL(&r, "send", "--dry-run", "tool.bad", deep);
		if (levels == 32) {
			CHECK_EXIT(&r, 0);
		} else {
			CHECK_FAILS(&r, 2);
			CHECK_HAS(r.err, "deeper");
		}
	}

	static const char *const bad_channels[] = {
		"has space", "", "a?b?c", "a!b!c", "tab\tname", "\xc3\xa9t\xc3\xa9", "a/b"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_channels); i++) {
		TOOL(&r, "send", bad_channels[i], "{}");
		CHECK_FAILS(&r, 2);
		CHECK_HAS(r.err, "channel name");
		TOOL(&r, "stats", bad_channels[i]);
		CHECK_FAILS(&r, 2);
	}
	char long_name[LAUREL_NAME_MAX + 2];
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	TOOL(&r, "send", long_name, "{}");
	CHECK_FAILS(&r, 2);
	CHECK_HAS(r.err, "too long");
	long_name[LAUREL_NAME_MAX - 1] = '\0';
	TOOL(&r, "send", "--dry-run", long_name, "{}");
	CHECK_EXIT(&r, 0);

	static const char *const bad_groups[] = {"has space", "", "a!b", "a?b"};
	for (size_t i = 0; i < ARRAY_SIZE(bad_groups); i++) {
		TOOL(&r, "group-send", bad_groups[i], "{}");
		CHECK_FAILS(&r, 2);
		CHECK_HAS(r.err, "group name");
		TOOL(&r, "group-members", bad_groups[i]);
		CHECK_FAILS(&r, 2);
	}
	CHECK_STR(test_redis_cmd(&redis, "DBSIZE"), "0");
}

static void test_unreachable(void)
{
	int port = test_free_port();
	char dead[64], portstr[16];
	snprintf(dead, sizeof(dead), "redis://127.0.0.1:%d", port);
	snprintf(portstr, sizeof(portstr), "%d", port);
	struct run r;
	static const char *const cmds[][3] = {
		{"send", "tool.x", "{\"a\": 1}"}, {"group-send", "g", "{}"},
		{"group-members", "g", NULL},	  {"stats", NULL, NULL},
		{"stats", "tool.x", NULL},	  {"flush", NULL, NULL}};
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		run_tool(&r, NULL, NULL, ARGS("--layer", dead, cmds[i][0], cmds[i][1], cmds[i][2]));
		CHECK_FAILS(&r, 3);
		CHECK_HAS(r.err, portstr);
		CHECK_INT(r.ms, <, 3000);
	}
	/* Usage errors come first, without touching the layer. */
	run_tool(&r, NULL, NULL, ARGS("--layer", dead, "send", "tool.x", "{"));
	CHECK_FAILS(&r, 2);
}

static void test_environment(struct laurel_layer *l, struct test_redis *second)
{
	struct run r;
	struct laurel_received m = {0};
	run_tool(&r, redis.url, NULL, ARGS("send", "tool.env", "{\"via\": \"LAUREL_LAYER\"}"));
	CHECK_EXIT(&r, 0);
	if (receive_one(l, "tool.env", &m, 2000) == 1) {
		CHECK_STR(laurel_msg_get_text(m.msg, "via", NULL), "LAUREL_LAYER");
		laurel_received_fini(&m);
	} else {
		CHECK(!"no message on tool.env");
	}

	/* --layer wins over the environment. */
	char dead[64];
	snprintf(dead, sizeof(dead), "redis://127.0.0.1:%d", test_free_port());
	run_tool(&r, dead, NULL, ARGS("--layer", redis.url, "send", "tool.env", "{}"));
	CHECK_EXIT(&r, 0);
	CHECK_EQ(receive_one(l, "tool.env", &m, 2000), 1);
	if (m.msg)
		laurel_received_fini(&m);
	run_tool(&r, dead, NULL, ARGS("send", "tool.env", "{}"));
	CHECK_FAILS(&r, 3);

	/* Two shards, comma- and space-separated: the tool and this process agree on them. */
	char both[300];
	snprintf(both, sizeof(both), " %s, %s ", redis.url, second->url);
	const char *urls[] = {redis.url, second->url};
	struct laurel_layer *sharded = new_layer(urls, 2);
	static const char *const names[] = {"tool.shard!a", "tool.shard!b", "tool.shard!c",
					    "tool.shard.q?abc", "tool.shard.q?def"};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		CHECK_EQ(laurel_layer_group_add(sharded, "tool-sharded", names[i]), 0);
	run_tool(&r, both, NULL, ARGS("group-members", "tool-sharded"));
	CHECK_EXIT(&r, 0);
	CHECK_EQ(strncmp(r.out, "5\n", 2), 0);
	for (size_t i = 0; i < 3; i++) {
		run_tool(&r, both, NULL, ARGS("send", names[3 + (i % 2)], "{\"shard\": true}"));
		CHECK_EXIT(&r, 0);
	}
	CHECK_EQ(receive_one(sharded, names[3], &m, 2000), 1);
	if (m.msg)
		laurel_received_fini(&m);
	CHECK_EQ(receive_one(sharded, names[4], &m, 2000), 1);
	if (m.msg)
		laurel_received_fini(&m);
	run_tool(&r, both, NULL, ARGS("stats", names[3]));
	CHECK_EQ(stat_of(r.out, "messages_pending"), 1);
	run_tool(&r, both, NULL, ARGS("flush"));
	CHECK_EXIT(&r, 0);
	CHECK_STR(test_redis_cmd(&redis, "DBSIZE"), "0");
	CHECK_STR(test_redis_cmd(second, "DBSIZE"), "0");
	laurel_layer_free(sharded);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-LAUREL\n", argv[0]);
		return 2;
	}
	tool_path = argv[1];
	unsetenv("LAUREL_LAYER");
	signal(SIGPIPE, SIG_IGN);

	test_help();
	struct test_redis second;
	if (test_redis_start(&redis) < 0)
		return 1;
	if (test_redis_start(&second) < 0) {
		test_redis_cleanup(&redis);
		return 1;
	}
	const char *urls[] = {redis.url};
	struct laurel_layer *l = new_layer(urls, 1);

	test_send_types(l);
	test_dry_run();
	test_process_channel(l);
	test_groups(l);
	test_group_history();
	test_stats_and_flush(l);
	test_bad_input();
	test_unreachable();
	test_environment(l, &second);

	laurel_layer_free(l);
	test_redis_cleanup(&second);
	test_redis_cleanup(&redis);
	return test_done();
}
