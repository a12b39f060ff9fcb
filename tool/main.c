/* laurel: the operator's tool for the channel layer (docs/tool.md). It sends to channels and
 * groups, shows group members and statistics, and flushes the layer.
 *
 * Subcommands and options are two declarative tables; parsing, defaults, the environment and
 * --help are all generated from them. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "laurel/layer.h"
#include "laurel/message.h"
#include "common/buf.h"
#include "common/layer.h"
#include "common/layer_census.h"
#include "common/json.h"
#include "common/log.h"
#include "common/options.h"
#include "common/redis_layout.h"
#include "common/sentinel.h"
#include "common/util.h"
#include "tool/dashboard.h"
#include "tool/runserver.h"

#ifndef LAUREL_VERSION
#define LAUREL_VERSION "0.1.0"
#endif

/* A message read from stdin ("-") larger than this is refused before parsing. */
#define STDIN_MAX (64u << 20)

enum exit_code {
	EXIT_OK = 0,
	EXIT_FULL = 1,	/* send: the channel is at capacity; group-history: what was asked for is lost */
	EXIT_USAGE = 2, /* bad command line, JSON, name or message; nothing was sent */
	EXIT_LAYER = 3, /* the layer is unreachable or failed */
};

static const char exit_help[] =
	"  0  success\n"
	"  1  the channel is full (send); nothing was sent\n"
	"  2  usage error, bad JSON, bad name or message too large; nothing was "
	"sent\n"
	"  3  the layer is unreachable (Redis down) or failed\n";

static const char json_help[] =
	"The message is a JSON object (or \"-\" to read it from stdin). Strings become text, "
	"{\"$bytes\": \"BASE64\"} becomes bytes, integers 64-bit ints, reals doubles, true and "
	"false "
	"bools, null nil, arrays lists and objects maps.";

struct config {
	struct layer_flags layer;
	int verbosity;
	bool dry_run;
	bool prometheus;
	char *groups;
	char *listen;
	struct option_list scrape;
	int history;
	bool help;
	bool version;
};

#define CFG(field) offsetof(struct config, field)
#define DAY 86400L

static const struct option opts[] = {
	LAYER_OPTIONS(CFG, "a send to a fuller channel fails (exit 1)."),
	LAYER_HISTORY_OPTION(CFG),
	{"dry-run", 'n', OPTION_FLAG, CFG(dry_run), 0, 0, NULL, NULL, NULL,
	 "send, group-send: check the name and the message and print the message as JSON, but "
	 "send nothing."},
	{"prometheus", 0, OPTION_FLAG, CFG(prometheus), 0, 0, NULL, NULL, NULL,
	 "stats: print the layer-wide figures in the Prometheus text format (laurel_layer_*)."},
	{"groups", 0, OPTION_STRING, CFG(groups), 1, 0, NULL, NULL, "PATTERN",
	 "stats --prometheus: also the live member count of each group whose name matches the "
	 "Redis glob PATTERN (at most 200 groups, the rest summed as group=\"(other)\")."},
	{"listen", 0, OPTION_STRING, CFG(listen), 1, 0, NULL, NULL, "ADDR",
	 "dashboard: serve the page on ADDR: host:port, [ipv6]:port or a unix socket path "
	 "starting with /."},
	{"scrape", 0, OPTION_LIST, CFG(scrape), 0, 0, NULL, NULL, "URL",
	 "dashboard: a Prometheus endpoint to read once a second, http://host:port[/path] (path "
	 "/metrics by default): a laurel-interface's or laurel-worker's --metrics. Repeat it "
	 "for each."},
	{"history", 0, OPTION_INT, CFG(history), 60, DAY, "600", NULL, "SECONDS",
	 "dashboard: how much history it keeps (one sample a second) for a page opened later."},
	{"verbosity|verbose", 'v', OPTION_VERBOSITY, CFG(verbosity), -1, 2, "-1", NULL, "N",
	 OPTION_VERBOSITY_HELP " -1 is quiet: nothing but the tool's own one-line messages (so -v "
	 "is 1)."},
	{"help", 'h', OPTION_FLAG, CFG(help), 0, 0, NULL, NULL, NULL,
	 "Show this help, or a command's (laurel COMMAND --help)."},
	{"version", 0, OPTION_FLAG, CFG(version), 0, 0, NULL, NULL, NULL, "Print the version."},
};

struct tool {
	struct config cfg;
	bool quick; /* short layer timeouts: a command that must not wait on a shard for long */
	bool given[ARRAY_SIZE(opts)]; /* options set on the command line or by the environment */
	struct laurel_layer *layer; /* made before a command that uses_layer runs */
};

struct command {
	const char *name;
	const char *operands;
	int min_args, max_args;
	bool uses_layer;
	bool dry_run; /* honours --dry-run (any other command refuses it) */
	int (*run)(struct tool *t, char **args, int nargs);
	const char *summary;
	const char *details;
};

static int cmd_send(struct tool *t, char **args, int nargs);
static int cmd_group_send(struct tool *t, char **args, int nargs);
static int cmd_group_members(struct tool *t, char **args, int nargs);
static int cmd_group_history(struct tool *t, char **args, int nargs);
static int cmd_stats(struct tool *t, char **args, int nargs);
static int cmd_flush(struct tool *t, char **args, int nargs);
static int cmd_help(struct tool *t, char **args, int nargs);
static int cmd_runserver(struct tool *t, char **args, int nargs);
static int cmd_dashboard(struct tool *t, char **args, int nargs);

static const struct command commands[] = {
	{.name = "send",
	 .operands = "CHANNEL JSON",
	 .min_args = 2,
	 .max_args = 2,
	 .uses_layer = true,
	 .dry_run = true,
	 .run = cmd_send,
	 .summary = "Send one message to a channel.",
	 .details = "Sends the message to CHANNEL (a normal channel \"name\", a single-reader "
		    "channel \"name?xxxx\" or a process channel \"name!xxxx\"). Prints nothing on "
		    "success; exits 1 if the channel already holds --capacity messages."},
	{.name = "group-send",
	 .operands = "GROUP JSON",
	 .min_args = 2,
	 .max_args = 2,
	 .uses_layer = true,
	 .dry_run = true,
	 .run = cmd_group_send,
	 .summary = "Send one message to every member of a group.",
	 .details = "Sends the message to every live member of GROUP, skipping members whose "
		    "channel is full, and prints how many member channels it reached. For a group "
		    "with a history (--group-history), a second line says where the message went "
		    "in it: \"epoch EPOCH offset N\"."},
	{.name = "group-members",
	 .operands = "GROUP",
	 .min_args = 1,
	 .max_args = 1,
	 .uses_layer = true,
	 .run = cmd_group_members,
	 .summary = "Show who is in a group.",
	 .details = "Prints the number of live members of GROUP, then one member channel per "
		    "line."},
	{.name = "group-history",
	 .operands = "GROUP [EPOCH OFFSET]",
	 .min_args = 1,
	 .max_args = 3,
	 .uses_layer = true,
	 .run = cmd_group_history,
	 .summary = "Show a group's kept messages (--group-history).",
	 .details = "Prints \"epoch EPOCH offset N first F\" (the history's epoch, the offset of "
		    "its newest message, the oldest still kept; epoch \"-\" when it has none), "
		    "then one line per kept message: its offset and the message as JSON. With "
		    "EPOCH and OFFSET, only what a client that has seen everything up to OFFSET in "
		    "EPOCH missed; exits 1 when that is no longer all there (docs/recovery.md)."},
	{.name = "stats",
	 .operands = "[CHANNEL]",
	 .min_args = 0,
	 .max_args = 1,
	 .uses_layer = true,
	 .run = cmd_stats,
	 .summary = "Show statistics.",
	 .details = "Without CHANNEL: prints the global messages_count and channel_full_count, "
		    "control_dropped (disconnect messages interfaces had to drop: over their outbox "
		    "limit, or refused by the server), then \"interfaces N\" and one \"interface PREFIX\" line per live laurel "
		    "interface, then one \"shard N URL\" line per Redis shard; a Sentinel shard's "
		    "goes on \"master HOST:PORT since TIME epoch E\": the server that is its master "
		    "now, since when the sentinels see it so, and their failover epoch (0: never "
		    "failed over). With CHANNEL: prints its messages_count, channel_full_count, "
		    "messages_pending (queued now) and messages_max_age (seconds the oldest queued "
		    "message has waited, 0 if none). One \"name value\" pair per line. Counters "
		    "expire (an hour per channel, a day globally). With --prometheus (no CHANNEL): "
		    "the layer-wide figures in the Prometheus text format, summed over the shards: "
		    "laurel_layer_channel_queued_messages, _channel_messages_total and "
		    "_channel_sends_full_total per channel (found by SCAN; \"name!x\" counted as "
		    "\"name!\", \"name?x\" as \"name?\"; past 200 channels the least busy are "
		    "summed as channel=\"(other)\"), the global messages, full sends and "
		    "control_dropped, live interfaces, and laurel_layer_shard_up per shard; "
		    "--groups PATTERN adds laurel_layer_group_members. A shard that does not answer "
		    "is shown as 0 and named on stderr; the exit status is 3 only if none answered "
		    "(see docs/tool.md)."},
	{.name = "flush",
	 .operands = "",
	 .min_args = 0,
	 .max_args = 0,
	 .uses_layer = true,
	 .run = cmd_flush,
	 .summary = "Delete everything of the layer.",
	 .details = "Deletes every message, queue, group, interface announcement and counter "
		    "under the layer's prefixes, on every shard. Other keys in the same Redis "
		    "database are left alone."},
	{.name = "dashboard",
	 .operands = "--listen ADDR [--scrape URL]...",
	 .min_args = 0,
	 .max_args = 0,
	 .uses_layer = true,
	 .run = cmd_dashboard,
	 .summary = "Serve a live page of the whole deployment.",
	 .details = "Serves a page on --listen ADDR (GET /) that shows, live, what the "
		    "deployment does: connections, messages per second, request latency "
		    "percentiles, queue depths per channel, channel-full events, live interfaces "
		    "and worker processes, and which Redis shards and scraped endpoints are up. "
		    "Once a second it takes the layer-wide figures of `laurel stats --prometheus` "
		    "from every shard of --layer (waiting at most 0.5 s to connect and 1 s for an "
		    "answer) and reads each --scrape URL (a laurel-interface's or laurel-worker's "
		    "--metrics endpoint; 0.9 s timeout, an endpoint that does not answer shows as "
		    "down). It keeps --history seconds, so a page opened later draws at once. "
		    "GET /api/state is the same as JSON; GET /metrics the last layer-wide figures. "
		    "The page is built into the program and loads nothing from elsewhere. Stops on "
		    "SIGINT or SIGTERM. See docs/operations.md, \"Dashboard\"."},
	{.name = "runserver",
	 .operands = "[OPTION]...",
	 .min_args = 0,
	 .max_args = -1,
	 .run = cmd_runserver,
	 .summary = "Run an application in one process, for development.",
	 .details = "The interface and worker threads over an in-memory channel layer, no Redis "
		    "needed. It takes options of its own: see laurel runserver --help."},
	{.name = "help",
	 .operands = "[COMMAND]",
	 .min_args = 0,
	 .max_args = 1,
	 .run = cmd_help,
	 .summary = "Show help for the tool or a command.",
	 .details = "Prints the help of COMMAND, or of the whole tool."},
};

/* The tool speaks to its operator in single stderr lines "laurel: ..." and returns an exit code;
 * the log_* family (timestamps, levels) is for the library's diagnostics, shown with -v. */
#define fail(code, ...) options_complain("laurel", (code), __VA_ARGS__)

/* s in double quotes, with quotes, backslashes and control characters escaped, cut short with
 * "..." if it does not fit: for names an operator typed, which may hold anything. */
static const char *quote(const char *s, char *out, size_t size)
{
	size_t n = 0;
	out[n++] = '"';
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char esc[8];
		if (ch == '"' || ch == '\\')
			snprintf(esc, sizeof(esc), "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			snprintf(esc, sizeof(esc), "\\x%02x", ch);
		else
			snprintf(esc, sizeof(esc), "%c", ch);
		size_t len = strlen(esc);
		if (n + len + 5 > size) {
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		memcpy(out + n, esc, len);
		n += len;
	}
	out[n++] = '"';
	out[n] = '\0';
	return out;
}

static void config_fini(struct config *cfg)
{
	options_free(opts, ARRAY_SIZE(opts), cfg);
}

/* Parses argv into cfg (common/options.h): options anywhere until "--", the rest into pos. */
static int parse_args(struct config *cfg, bool *given, int argc, char **argv, char **pos,
		      int *npos)
{
	char err[512];
	if (options_parse(opts, ARRAY_SIZE(opts), cfg, argc, argv, pos, npos, given, err,
			  sizeof(err)) < 0)
		return fail(EXIT_USAGE, "%s", err);
	return 0;
}

/* --- Help ----------------------------------------------------------------------------------- */

static void print_tail(FILE *f)
{
	fprintf(f, "\nOptions (anywhere on the line; \"--\" ends them):\n");
	options_print(f, opts, ARRAY_SIZE(opts));
	fprintf(f, "\nExit status:\n%s", exit_help);
}

static void print_help(FILE *f)
{
	fprintf(f, "Usage: laurel [OPTIONS] COMMAND [ARGS...]\n\n");
	options_wrap(f,
		      "Operates a laurel channel layer: named channels and groups in Redis, in the "
		      "asgi_redis 1.4 layout.",
		      0, 0);
	fprintf(f, "\nCommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		char left[64];
		snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].operands);
		options_item(f, left, commands[i].summary);
	}
	fputc('\n', f);
	options_wrap(f, json_help, 0, 0);
	print_tail(f);
	fprintf(f, "\nlaurel COMMAND --help shows more about a command. See docs/tool.md.\n");
}

static void print_command_help(FILE *f, const struct command *c)
{
	fprintf(f, "Usage: laurel [OPTIONS] %s %s\n\n", c->name, c->operands);
	options_wrap(f, c->summary, 0, 0);
	fputc('\n', f);
	options_wrap(f, c->details, 0, 0);
	if (c->run == cmd_send || c->run == cmd_group_send) {
		fputc('\n', f);
		options_wrap(f, json_help, 0, 0);
	}
	print_tail(f);
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static int unknown_command(const char *name)
{
	char q[128];
	return fail(EXIT_USAGE, "unknown command %s (see laurel --help)",
		    quote(name, q, sizeof(q)));
}

/* Only reached as "laurel -v runserver": runserver is dispatched before the tool's options. */
static int cmd_runserver(struct tool *t, char **args, int nargs)
{
	return fail(EXIT_USAGE, "give runserver first: laurel runserver [OPTION]... (see laurel "
				"runserver --help)");
}

static int cmd_help(struct tool *t, char **args, int nargs)
{
	if (nargs == 0) {
		print_help(stdout);
		return EXIT_OK;
	}
	const struct command *c = find_command(args[0]);
	if (!c)
		return unknown_command(args[0]);
	print_command_help(stdout, c);
	return EXIT_OK;
}

/* --- Commands ------------------------------------------------------------------------------- */

static int check_name(const char *name, bool group)
{
	const char *what = group ? "group" : "channel";
	char q[LAUREL_NAME_MAX + 64];
	size_t len = strlen(name);
	if (group ? laurel_valid_group(name) : laurel_valid_channel(name))
		return 0;
	if (len == 0)
		return fail(EXIT_USAGE, "the %s name is empty", what);
	if (len >= LAUREL_NAME_MAX)
		return fail(EXIT_USAGE, "%s name %s is too long: %zu characters, at most %d", what,
			    quote(name, q, sizeof(q)), len, LAUREL_NAME_MAX - 1);
	if (group)
		return fail(EXIT_USAGE,
			    "invalid group name %s: use only letters, digits, '-', '_' and '.'",
			    quote(name, q, sizeof(q)));
	return fail(EXIT_USAGE,
		    "invalid channel name %s: use letters, digits, '-', '_' and '.', then "
		    "optionally one '?' or '!' followed by more of those",
		    quote(name, q, sizeof(q)));
}

static int read_stdin(struct buf *in)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		if (in->len + n > STDIN_MAX)
			return fail(EXIT_USAGE, "the message on stdin is larger than %u bytes",
				    STDIN_MAX);
		buf_append(in, chunk, n);
	}
	if (ferror(stdin))
		return fail(EXIT_USAGE, "cannot read the message from stdin: %s", strerror(errno));
	return 0;
}

static const char *json_type_name(const struct laurel_value *v)
{
	switch (v->type) {
	case LAUREL_LIST:
		return "an array";
	case LAUREL_TEXT:
		return "a string";
	case LAUREL_INT:
	case LAUREL_DOUBLE:
		return "a number";
	case LAUREL_BOOL:
		return "a boolean";
	case LAUREL_NIL:
		return "null";
	case LAUREL_BYTES:
		return "bytes ({\"$bytes\": ...})";
	case LAUREL_MAP:
		break;
	}
	return "an object";
}

/* Parses the JSON operand ("-" = stdin) into *out, the tool's way (common/json.h, JSON_POLICY_LOSSY):
 * one object. Returns 0 or EXIT_USAGE. */
static int load_message(const char *arg, struct laurel_msg **out)
{
	struct buf in;
	char err[512];
	int code = 0;
	buf_init(&in);
	if (strcmp(arg, "-") == 0)
		code = read_stdin(&in);
	else
		buf_append_str(&in, arg);
	if (code == 0) {
		struct laurel_msg *m = laurel_msg_new();
		const struct laurel_value *root = laurel_msg_croot(m);
		if (json_parse(in.len ? in.data : "", in.len, JSON_POLICY_LOSSY, m, laurel_msg_root(m), err,
			       sizeof(err)) < 0)
			code = fail(EXIT_USAGE, "the message is %s", err);
		else if (root->type != LAUREL_MAP)
			code = fail(EXIT_USAGE, "the message must be a JSON object ({...}), not %s",
				    json_type_name(root));
		if (code)
			laurel_msg_free(m);
		else
			*out = m;
	}
	buf_fini(&in);
	return code;
}

/* Prints a message as JSON on one line: lossily, as docs/tool.md says. */
static int print_json(const struct laurel_msg *msg, const char *lead)
{
	char *text;
	if (json_dump(laurel_msg_croot(msg), JSON_POLICY_LOSSY, NULL, &text, NULL) < 0)
		return fail(EXIT_LAYER, "a message nests too deep to be written as JSON");
	printf("%s%s\n", lead, text);
	free(text);
	return EXIT_OK;
}

static int print_message(const struct laurel_msg *msg)
{
	return print_json(msg, "");
}

static int layer_error(struct tool *t, int rc)
{
	const char *detail = laurel_layer_error(t->layer);
	return fail(rc == -EINVAL || rc == -EMSGSIZE ? EXIT_USAGE : EXIT_LAYER, "%s",
		    detail && *detail ? detail : strerror(-rc));
}

static int cmd_send(struct tool *t, char **args, int nargs)
{
	const char *channel = args[0];
	struct laurel_msg *msg;
	char q[LAUREL_NAME_MAX + 64];
	int code = check_name(channel, false);
	if (code || (code = load_message(args[1], &msg)))
		return code;
	if (t->cfg.dry_run) {
		code = print_message(msg);
	} else {
		int rc = laurel_layer_send(t->layer, channel, msg);
		if (rc == LAUREL_FULL)
			code = fail(EXIT_FULL,
				    "channel %s is full (capacity %d); the message was not sent",
				    quote(channel, q, sizeof(q)), t->cfg.layer.capacity);
		else if (rc < 0)
			code = layer_error(t, rc);
		else
			log_info("sent a message to %s", quote(channel, q, sizeof(q)));
	}
	laurel_msg_free(msg);
	return code;
}

static int cmd_group_send(struct tool *t, char **args, int nargs)
{
	const char *group = args[0];
	struct laurel_msg *msg;
	size_t delivered = 0;
	int code = check_name(group, true);
	if (code || (code = load_message(args[1], &msg)))
		return code;
	if (t->cfg.dry_run) {
		code = print_message(msg);
	} else {
		struct laurel_history_pos pos;
		int rc = laurel_layer_group_publish(t->layer, group, msg, &delivered, &pos);
		if (rc < 0) {
			code = layer_error(t, rc);
		} else {
			printf("%zu\n", delivered);
			if (pos.epoch[0])
				printf("epoch %s offset %" PRIu64 "\n", pos.epoch, pos.offset);
		}
	}
	laurel_msg_free(msg);
	return code;
}

static int cmd_group_members(struct tool *t, char **args, int nargs)
{
	char **members = NULL;
	size_t n = 0;
	int code = check_name(args[0], true);
	if (code)
		return code;
	int rc = laurel_layer_group_members(t->layer, args[0], &members, &n);
	if (rc < 0)
		return layer_error(t, rc);
	printf("%zu\n", n);
	for (size_t i = 0; i < n; i++)
		printf("%s\n", members[i]);
	laurel_strv_free(members);
	return EXIT_OK;
}

static int cmd_group_history(struct tool *t, char **args, int nargs)
{
	int code = check_name(args[0], true);
	if (code)
		return code;
	const char *epoch = NULL;
	uint64_t after = 0;
	if (nargs == 2)
		return fail(EXIT_USAGE, "group-history: give both EPOCH and OFFSET, or neither");
	if (nargs == 3) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(args[2], &end, 10);
		if (errno || end == args[2] || *end || args[2][0] == '-')
			return fail(EXIT_USAGE, "group-history: OFFSET must be a whole number, not "
						"\"%s\"",
				    args[2]);
		epoch = args[1];
		after = v;
	}
	struct laurel_history_entry *v = NULL;
	struct laurel_history_pos top;
	size_t n = 0;
	int rc = laurel_layer_group_history(t->layer, args[0], epoch, after, &v, &n, &top);
	if (rc == LAUREL_HISTORY_LOST) {
		fprintf(stderr, "laurel: %s\n", laurel_layer_error(t->layer));
		return EXIT_FULL;
	}
	if (rc < 0)
		return rc == -EINVAL ? fail(EXIT_USAGE, "%s", laurel_layer_error(t->layer))
				     : layer_error(t, rc);
	printf("epoch %s offset %" PRIu64 " first %" PRIu64 "\n", top.epoch[0] ? top.epoch : "-",
	       top.offset, top.first);
	code = EXIT_OK;
	for (size_t i = 0; i < n && code == EXIT_OK; i++) {
		char lead[32];
		snprintf(lead, sizeof(lead), "%" PRIu64 " ", v[i].offset);
		code = print_json(v[i].msg, lead);
	}
	laurel_history_entries_free(v, n);
	return code;
}

/* One line per shard; a Sentinel shard's says which server is its master now, since when (as
 * the sentinels saw it take the role) and its failover epoch. */
static void print_shards(struct tool *t)
{
	for (size_t i = 0; i < t->cfg.layer.urls.n; i++) {
		struct layer_endpoint ep = {0};
		char err[512];
		if (layer_endpoint_parse(&ep, t->cfg.layer.urls.v[i], err, sizeof(err)) < 0)
			continue;
		if (!ep.master_name) {
			printf("shard %zu %s\n", i, ep.desc);
			layer_endpoint_fini(&ep);
			continue;
		}
		struct sentinel_report r;
		if (sentinel_report(&ep, 1000, &r, err, sizeof(err)) < 0) {
			printf("shard %zu %s master unknown (%s)\n", i, ep.desc, err);
			layer_endpoint_fini(&ep);
			continue;
		}
		char since[32] = "unknown";
		if (r.master_for_ms >= 0) {
			time_t at = time(NULL) - (time_t)(r.master_for_ms / 1000);
			struct tm tm;
			gmtime_r(&at, &tm);
			strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
		printf(strchr(r.host, ':') ? "shard %zu %s master [%s]:%d since %s epoch %lld\n"
					   : "shard %zu %s master %s:%d since %s epoch %lld\n",
		       i, ep.desc, r.host, r.port, since, r.config_epoch);
		layer_endpoint_fini(&ep);
	}
}

/* The layer-wide figures in the Prometheus text format. Printed whatever the shards do: a shard
 * that does not answer is a figure too (laurel_layer_shard_up 0), named on stderr. */
static int stats_prometheus(struct tool *t)
{
	struct layer_census c;
	struct layer_census_options o = {.groups = t->cfg.groups};
	int rc = layer_census_take(t->layer, &o, &c);
	if (rc < 0) {
		layer_census_fini(&c);
		return layer_error(t, rc);
	}
	struct buf b;
	buf_init(&b);
	layer_census_prometheus(&c, &b);
	fwrite(b.data, 1, b.len, stdout);
	buf_fini(&b);
	for (size_t i = 0; i < c.nshards; i++)
		if (!c.shards[i].up)
			fail(0, "shard %zu (%s) did not answer: %s", i, c.shards[i].url,
			     c.shards[i].error);
	int code = c.shards_up ? EXIT_OK : EXIT_LAYER;
	layer_census_fini(&c);
	return code;
}

static int cmd_stats(struct tool *t, char **args, int nargs)
{
	const char *channel = nargs ? args[0] : NULL;
	struct laurel_stats st;
	if (t->cfg.groups && !t->cfg.prometheus)
		return fail(EXIT_USAGE, "--groups goes with --prometheus");
	if (t->cfg.prometheus && channel)
		return fail(EXIT_USAGE, "--prometheus prints the layer-wide figures: give no "
					"CHANNEL");
	if (t->cfg.prometheus)
		return stats_prometheus(t);
	int code = channel ? check_name(channel, false) : 0;
	if (code)
		return code;
	int rc = laurel_layer_stats(t->layer, channel, &st);
	if (rc < 0)
		return layer_error(t, rc);
	printf("messages_count %" PRId64 "\n", st.messages_count);
	printf("channel_full_count %" PRId64 "\n", st.channel_full_count);
	if (channel) {
		printf("messages_pending %" PRId64 "\n", st.messages_pending);
		printf("messages_max_age %" PRId64 "\n", st.messages_max_age);
		return EXIT_OK;
	}
	printf("control_dropped %" PRId64 "\n", st.control_dropped);
	char **prefixes = NULL;
	size_t n = 0;
	rc = laurel_layer_interfaces(t->layer, &prefixes, &n);
	if (rc < 0)
		return layer_error(t, rc);
	printf("interfaces %zu\n", n);
	for (size_t i = 0; i < n; i++)
		printf("interface %s\n", prefixes[i]);
	laurel_strv_free(prefixes);
	print_shards(t);
	return EXIT_OK;
}

static int cmd_dashboard(struct tool *t, char **args, int nargs)
{
	struct dashboard_options o = {
		.listen = t->cfg.listen,
		.scrape = t->cfg.scrape.v,
		.nscrape = t->cfg.scrape.n,
		.history_s = t->cfg.history,
	};
	char err[512];
	if (dashboard_run(t->layer, &o, err, sizeof(err)) < 0)
		return fail(EXIT_USAGE, "%s", err);
	return EXIT_OK;
}

static int cmd_flush(struct tool *t, char **args, int nargs)
{
	int rc = laurel_layer_flush(t->layer);
	if (rc < 0)
		return layer_error(t, rc);
	log_info("flushed the layer");
	return EXIT_OK;
}

/* --- Main ----------------------------------------------------------------------------------- */

static int open_layer(struct tool *t)
{
	struct layer_flags *lf = &t->cfg.layer;
	char err[256] = "";
	for (size_t i = 0; i < lf->urls.n; i++)
		if (strncmp(lf->urls.v[i], "memory:", 7) == 0)
			return fail(
				EXIT_USAGE,
				"the memory layer lives inside one process and would vanish with "
				"this one: give a Redis URL");
	if (layer_flags_parse(lf, err, sizeof(err)) < 0)
		return fail(EXIT_USAGE, "%s", err);
	struct laurel_layer_options o = layer_flags_options(lf);
	o.connect_timeout_ms = t->quick ? 500 : 0;
	o.command_timeout_ms = t->quick ? 1000 : 0;
	int rc = laurel_layer_new(&t->layer, &o, err, sizeof(err));
	if (rc < 0)
		return fail(EXIT_USAGE, "%s", err[0] ? err : strerror(-rc));
	if (laurel_layer_check(t->layer) < 0)
		return fail(EXIT_LAYER, "%s", laurel_layer_error(t->layer));
	return 0;
}

/* Options that belong to some commands: given to another, they are refused rather than
 * ignored (the operator meant something the command will not do). */
static const struct {
	const char *option;
	const char *commands; /* one or more, separated by spaces */
} command_options[] = {
	{"prometheus", "stats"},
	{"groups", "stats"},
	{"listen", "dashboard"},
	{"scrape", "dashboard"},
	{"history", "dashboard"},
};

static int check_command_options(const struct tool *t, const struct command *c)
{
	for (size_t i = 0; i < ARRAY_SIZE(command_options); i++) {
		size_t k = 0;
		while (strcmp(opts[k].name, command_options[i].option) != 0)
			k++;
		if (!t->given[k])
			continue;
		const char *list = command_options[i].commands;
		size_t len = strlen(c->name);
		bool ok = false;
		for (const char *p = list; (p = strstr(p, c->name)); p += len)
			if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
				ok = true;
		if (!ok)
			return fail(EXIT_USAGE, "--%s applies to %s only, not %s", opts[k].name,
				    list, c->name);
	}
	return 0;
}

static int run(struct tool *t, char **pos, int npos)
{
	if (t->cfg.version) {
		printf("laurel %s\n", LAUREL_VERSION);
		return EXIT_OK;
	}
	if (npos == 0) {
		if (t->cfg.help) {
			print_help(stdout);
			return EXIT_OK;
		}
		return fail(EXIT_USAGE, "no command given (see laurel --help)");
	}
	const struct command *c = find_command(pos[0]);
	if (!c)
		return unknown_command(pos[0]);
	if (t->cfg.help) {
		print_command_help(stdout, c);
		return EXIT_OK;
	}
	int nargs = npos - 1;
	if (nargs < c->min_args || (c->max_args >= 0 && nargs > c->max_args)) {
		if (c->max_args == 0)
			return fail(EXIT_USAGE, "%s takes no arguments (see laurel %s --help)",
				    c->name, c->name);
		return fail(EXIT_USAGE, "usage: laurel %s %s (see laurel %s --help)", c->name,
			    c->operands, c->name);
	}
	/* Refused rather than ignored: "laurel -n flush" must not flush. */
	if (t->cfg.dry_run && !c->dry_run)
		return fail(EXIT_USAGE, "--dry-run applies to send and group-send only, not %s",
			    c->name);
	int code = check_command_options(t, c);
	if (code)
		return code;
	if (c->run == cmd_dashboard) {
		/* Checked before the layer is opened: a typo is reported at once. */
		struct dashboard_options o = {.listen = t->cfg.listen,
					      .scrape = t->cfg.scrape.v,
					      .nscrape = t->cfg.scrape.n};
		char err[512];
		if (dashboard_check(&o, err, sizeof(err)) < 0)
			return fail(EXIT_USAGE, "%s", err);
		t->quick = true;
	}
	if (c->uses_layer) {
		code = open_layer(t);
		if (code)
			return code;
	}
	return c->run(t, pos + 1, nargs);
}

int main(int argc, char **argv)
{
	struct tool t = {0};
	char **pos = xcalloc((size_t)argc, sizeof(*pos));
	int npos = 0;
	log_set_program("laurel");
	/* The development server has options of its own. */
	if (argc > 1 && strcmp(argv[1], "runserver") == 0) {
		free(pos);
		return runserver_main(argc - 1, argv + 1);
	}
	int code = parse_args(&t.cfg, t.given, argc, argv, pos, &npos);
	if (code == 0) {
		/* Quiet by default (-1): a failure is reported once, by the tool, in one line. */
		log_level = log_level_for(t.cfg.verbosity);
		code = run(&t, pos, npos);
	}
	laurel_layer_free(t.layer);
	layer_flags_fini(&t.cfg.layer);
	config_fini(&t.cfg);
	free(pos);
	return code;
}
