/* laurel-worker: runs an application's consumers on the messages of its channels (docs/worker.md).
 *
 * The options are one declarative table; parsing, the environment, defaults and --help are all
 * generated from it. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "laurel/layer.h"
#include "routing/routing.h"
#include "worker/app.h"
#include "worker/consumer.h"
#include "worker/delay.h"
#include "worker/pool.h"
#include "worker/worker.h"

#ifndef LAUREL_VERSION
#define LAUREL_VERSION "0.1.0"
#endif

#define HELP_WIDTH 80
#define HELP_COLUMN 28

enum exit_code {
	EXIT_OK = 0,	/* stopped by SIGTERM or SIGINT */
	EXIT_FAIL = 1,	/* could not run (fork, signals) */
	EXIT_USAGE = 2, /* bad option, application or routing; nothing was started */
};

static const char exit_help[] = "  0  stopped by SIGTERM or SIGINT (or --help, --version)\n"
				"  1  could not start the worker processes\n"
				"  2  bad option, or an application or routing that cannot be "
				"loaded\n";

static const char signal_help[] =
	"  SIGTERM, SIGINT  finish the messages in hand, then exit (the supervisor passes it "
	"on\n"
	"                   to every worker process and waits for them)\n"
	"  SIGHUP           supervisor: load --app again and, if it loads, replace the worker\n"
	"                   processes one by one, each new one started before the old one stops\n";

struct strlist {
	char **v;
	size_t n;
};

struct config {
	struct strlist layers;
	struct strlist only;
	struct strlist exclude;
	char *app;
	char *prefix;
	int expiry;
	int group_expiry;
	int capacity;
	int processes;
	int batch;
	int verbose;
	bool delay;
	bool help;
	bool version;
};

enum opt_type {
	OPT_FLAG,  /* bool, set when given */
	OPT_COUNT, /* int, +1 each time given */
	OPT_INT,   /* int in [min, max] */
	OPT_STRING,
	OPT_LIST, /* struct strlist; repeatable; a value may hold several, space- or comma-separated
		   */
};

struct opt {
	const char *name;
	char short_name;
	enum opt_type type;
	size_t offset;
	long min, max;	     /* OPT_INT: range; OPT_STRING: min is the least length */
	const char *def;     /* parsed like a command-line value when neither flag nor env is set */
	const char *env;     /* environment variable read when the flag is not given */
	const char *metavar; /* NULL for flags */
	const char *help;
};

#define CFG(field) offsetof(struct config, field)
#define DAY 86400L
#define YEAR (365 * DAY)

static const struct opt opts[] = {
	{"app", 0, OPT_STRING, CFG(app), 1, 0, NULL, "LAUREL_APP", "PATH",
	 "The application: a shared object that exports its routing with LAUREL_APP. Required "
	 "unless --delay is given."},
	{"delay", 0, OPT_FLAG, CFG(delay), 0, 0, NULL, NULL, NULL,
	 "Run the asgi.delay service instead of an application: messages {channel, delay: ms, "
	 "content} sent to asgi.delay are kept in Redis (surviving a restart) and sent to channel "
	 "when due; --app and the channel options are ignored. One process (--processes 1) is "
	 "enough."},
	{"layer", 0, OPT_LIST, CFG(layers), 0, 0, "redis://127.0.0.1:6379", "LAUREL_LAYER", "URL",
	 "Redis server of the layer: redis://[[user]:password@]host[:port][/db] or "
	 "unix:///path[?db=N]. Repeat it for shards, listed in the same order everywhere."},
	{"prefix", 0, OPT_STRING, CFG(prefix), 1, 0, "asgi:", NULL, "PREFIX",
	 "Prefix of the layer's Redis keys."},
	{"expiry", 0, OPT_INT, CFG(expiry), 1, YEAR, "60", NULL, "SECONDS",
	 "How long a sent message waits to be read."},
	{"group-expiry", 0, OPT_INT, CFG(group_expiry), 1, YEAR, "86400", NULL, "SECONDS",
	 "How long a group membership and a channel session live."},
	{"capacity", 0, OPT_INT, CFG(capacity), 1, 1000000000L, "100", NULL, "N",
	 "Messages a channel holds; a reply to a fuller channel is retried for 2 s, then dropped."},
	{"processes", 'n', OPT_INT, CFG(processes), 0, 1024, "1", NULL, "N",
	 "Worker processes, kept running by a supervisor that replaces one that dies. 0 runs the "
	 "worker in this process, without a supervisor."},
	{"only-channels", 0, OPT_LIST, CFG(only), 0, 0, NULL, NULL, "GLOB",
	 "Listen only on the routing's channels that match one of these globs (repeatable)."},
	{"exclude-channels", 0, OPT_LIST, CFG(exclude), 0, 0, NULL, NULL, "GLOB",
	 "Do not listen on the channels that match one of these globs (repeatable)."},
	{"batch", 0, OPT_INT, CFG(batch), 1, 1000, "8", NULL, "N",
	 "Messages taken from the layer in one round trip when several are ready."},
	{"verbose", 'v', OPT_COUNT, CFG(verbose), 0, 0, NULL, NULL, NULL,
	 "Log more to stderr: once for each process start and stop, twice for every message."},
	{"help", 'h', OPT_FLAG, CFG(help), 0, 0, NULL, NULL, NULL, "Show this help."},
	{"version", 0, OPT_FLAG, CFG(version), 0, 0, NULL, NULL, NULL, "Print the version."},
};

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "laurel-worker: %s\n", line);
	return code;
}

static void strlist_push(struct strlist *l, const char *s, size_t len)
{
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = xstrndup(s, len);
}

static void strlist_fini(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static void config_fini(struct config *cfg)
{
	strlist_fini(&cfg->layers);
	strlist_fini(&cfg->only);
	strlist_fini(&cfg->exclude);
	free(cfg->app);
	free(cfg->prefix);
}

/* --- Options -------------------------------------------------------------------------------- */

static const struct opt *find_long(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static const struct opt *find_short(char c)
{
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
		if (opts[i].short_name && opts[i].short_name == c)
			return &opts[i];
	return NULL;
}

static bool takes_value(const struct opt *o)
{
	return o->type != OPT_FLAG && o->type != OPT_COUNT;
}

static int set_option(struct config *cfg, const struct opt *o, const char *val, const char *source)
{
	void *field = (char *)cfg + o->offset;
	switch (o->type) {
	case OPT_FLAG:
		*(bool *)field = true;
		return 0;
	case OPT_COUNT:
		(*(int *)field)++;
		return 0;
	case OPT_INT: {
		char *end;
		errno = 0;
		long v = strtol(val, &end, 10);
		if (errno || end == val || *end || v < o->min || v > o->max)
			return fail(EXIT_USAGE,
				    "%s must be a whole number from %ld to %ld, not \"%s\"", source,
				    o->min, o->max, val);
		*(int *)field = (int)v;
		return 0;
	}
	case OPT_STRING:
		if (strlen(val) < (size_t)o->min)
			return fail(EXIT_USAGE, "%s must not be empty", source);
		free(*(char **)field);
		*(char **)field = xstrdup(val);
		return 0;
	case OPT_LIST: {
		struct strlist *l = field;
		size_t before = l->n;
		for (const char *p = val; *p;) {
			p += strspn(p, " ,\t\n");
			size_t len = strcspn(p, " ,\t\n");
			if (len)
				strlist_push(l, p, len);
			p += len;
		}
		if (l->n == before)
			return fail(EXIT_USAGE, "%s holds no value", source);
		return 0;
	}
	}
	return fail(EXIT_USAGE, "%s: unknown option type", source);
}

/* Parses argv (options only: laurel-worker takes no operands), then fills every option not given
 * from its environment variable, else its default. Returns 0 or EXIT_USAGE. */
static int parse_args(struct config *cfg, int argc, char **argv)
{
	bool given[ARRAY_SIZE(opts)] = {false};
	char source[64];
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			return fail(EXIT_USAGE,
				    "unexpected argument \"%s\" (see laurel-worker --help)", a);
		const struct opt *o;
		const char *val = NULL;
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			if (!(o = find_long(name, len)))
				return fail(EXIT_USAGE,
					    "unknown option \"%s\" (see laurel-worker --help)", a);
			snprintf(source, sizeof(source), "--%s", o->name);
			val = eq ? eq + 1 : NULL;
			if (!takes_value(o) && val)
				return fail(EXIT_USAGE, "option --%s takes no value", o->name);
		} else {
			if (!(o = find_short(a[1])))
				return fail(EXIT_USAGE,
					    "unknown option \"-%c\" (see laurel-worker --help)",
					    a[1]);
			snprintf(source, sizeof(source), "-%c", a[1]);
			if (a[2] && takes_value(o))
				val = a + 2;
			else if (a[2] && o->type == OPT_COUNT &&
				 strspn(a + 1, "v") == strlen(a + 1))
				for (const char *c = a + 2; *c; c++)
					set_option(cfg, o, NULL, source);
			else if (a[2])
				return fail(EXIT_USAGE, "option -%c takes no value", a[1]);
		}
		if (takes_value(o) && !val) {
			if (i + 1 >= argc)
				return fail(EXIT_USAGE, "option %s needs a value (%s)", source,
					    o->metavar);
			val = argv[++i];
		}
		if (set_option(cfg, o, val, source))
			return EXIT_USAGE;
		given[o - opts] = true;
	}
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		const struct opt *o = &opts[i];
		const char *env = o->env ? getenv(o->env) : NULL;
		if (given[i])
			continue;
		if (env && env[strspn(env, " ,\t\n")]) {
			if (set_option(cfg, o, env, o->env))
				return EXIT_USAGE;
		} else if (o->def) {
			snprintf(source, sizeof(source), "the default of --%s", o->name);
			if (set_option(cfg, o, o->def, source))
				return EXIT_USAGE;
		}
	}
	return 0;
}

/* --- Help ----------------------------------------------------------------------------------- */

static void print_wrapped(FILE *f, const char *text, int indent, int col)
{
	for (const char *p = text; *p;) {
		size_t word = strcspn(p, " ");
		if (col > indent && col + 1 + (int)word > HELP_WIDTH) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, word, f);
		col += (int)word;
		p += word;
		p += strspn(p, " ");
	}
	fputc('\n', f);
}

static void print_help(FILE *f)
{
	fprintf(f, "Usage: laurel-worker --app PATH [OPTIONS]\n"
		   "       laurel-worker --delay [OPTIONS]\n\n");
	print_wrapped(f,
		      "Takes messages off the channels that the application's routing names, in a "
		      "laurel (asgi_redis 1.4 compatible) channel layer, and runs the routed "
		      "consumers.",
		      0, 0);
	fprintf(f, "\nOptions:\n");
	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		const struct opt *o = &opts[i];
		char left[64], text[640];
		size_t n;
		if (o->short_name)
			n = (size_t)snprintf(left, sizeof(left), "-%c, --%s", o->short_name,
					     o->name);
		else
			n = (size_t)snprintf(left, sizeof(left), "    --%s", o->name);
		if (o->metavar)
			snprintf(left + n, sizeof(left) - n, " %s", o->metavar);
		n = (size_t)snprintf(text, sizeof(text), "%s", o->help);
		if (o->env)
			n += (size_t)snprintf(text + n, sizeof(text) - n, " Environment: %s.",
					      o->env);
		if (o->def && o->type == OPT_STRING)
			snprintf(text + n, sizeof(text) - n, " Default: \"%s\".", o->def);
		else if (o->def)
			snprintf(text + n, sizeof(text) - n, " Default: %s.", o->def);
		int col = fprintf(f, "  %s", left);
		if (col >= HELP_COLUMN - 1) {
			fprintf(f, "\n%*s", HELP_COLUMN, "");
			col = HELP_COLUMN;
		} else {
			col += fprintf(f, "%*s", HELP_COLUMN - col, "");
		}
		print_wrapped(f, text, HELP_COLUMN, col);
	}
	fprintf(f, "\nSignals:\n%s", signal_help);
	fprintf(f, "\nExit status:\n%s", exit_help);
	fprintf(f, "\nSee docs/worker.md.\n");
}

/* --- Running -------------------------------------------------------------------------------- */

struct run {
	struct config *cfg;
	struct worker_options wopt;
	char program[64];
};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	stop_requested = 1;
}

static void install_stop_handlers(void)
{
	struct sigaction sa = {.sa_handler = on_stop, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

/* Loads the application and its routing once, to report every problem before anything starts. */
static int check_app(struct run *run, bool announce)
{
	struct app *a = NULL;
	struct worker *w = NULL;
	char err[1024];
	if (app_load(&a, run->cfg->app, err, sizeof(err)) < 0)
		return fail(EXIT_USAGE, "%s", err);
	run->wopt.routes = app_routes(a);
	if (worker_new(&w, &run->wopt, err, sizeof(err)) < 0) {
		app_free(a);
		return fail(EXIT_USAGE, "%s: %s", run->cfg->app, err);
	}
	if (announce) {
		size_t n;
		const char *const *ch = worker_channels(w, &n);
		char list[1024] = "";
		for (size_t i = 0, len = 0; i < n && len < sizeof(list); i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
						i ? ", " : "", ch[i]);
		log_info("application %s (%s) listens on %s", app_name(a), run->cfg->app, list);
	}
	worker_free(w);
	app_free(a);
	run->wopt.routes = NULL;
	return 0;
}

static int run_worker(struct run *run)
{
	struct app *a = NULL;
	struct worker *w = NULL;
	char err[1024];
	install_stop_handlers();
	if (app_load(&a, run->cfg->app, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return EXIT_USAGE;
	}
	run->wopt.routes = app_routes(a);
	if (worker_new(&w, &run->wopt, err, sizeof(err)) < 0) {
		log_error("%s: %s", run->cfg->app, err);
		app_free(a);
		return EXIT_USAGE;
	}
	log_debug("worker process running");
	worker_run(w, &stop_requested);
	log_debug("worker process stopping");
	worker_free(w);
	app_free(a);
	return EXIT_OK;
}

static int run_delay(struct run *run)
{
	struct delay *d = NULL;
	char err[1024];
	install_stop_handlers();
	if (delay_new(&d, &run->wopt.layer, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return EXIT_USAGE;
	}
	log_info("delay service running on %s", DELAY_CHANNEL);
	delay_run(d, &stop_requested);
	log_debug("delay service stopping");
	delay_free(d);
	return EXIT_OK;
}

static int pool_child(void *arg, int slot)
{
	struct run *run = arg;
	snprintf(run->program, sizeof(run->program), "laurel-worker[%d]", (int)getpid());
	log_set_program(run->program);
	return run->cfg->delay ? run_delay(run) : run_worker(run);
}

static int pool_reload(void *arg)
{
	struct run *run = arg;
	return run->cfg->delay ? 0 : check_app(run, false);
}

int main(int argc, char **argv)
{
	struct config cfg = {0};
	struct run run = {.cfg = &cfg};
	int code = EXIT_OK;
	log_set_program("laurel-worker");
	if ((code = parse_args(&cfg, argc, argv)))
		goto out;
	if (cfg.help) {
		print_help(stdout);
		goto out;
	}
	if (cfg.version) {
		printf("laurel-worker %s (API version %d)\n", LAUREL_VERSION, LAUREL_API_VERSION);
		goto out;
	}
	if (!cfg.app && !cfg.delay) {
		code = fail(EXIT_USAGE, "--app PATH is required (see laurel-worker --help)");
		goto out;
	}

	log_level = cfg.verbose >= 2 ? LOG_DEBUG : cfg.verbose == 1 ? LOG_INFO : LOG_WARN;
	run.wopt = (struct worker_options){
		.layer = {.urls = (const char *const *)cfg.layers.v,
			  .nurls = cfg.layers.n,
			  .prefix = cfg.prefix,
			  .expiry = cfg.expiry,
			  .group_expiry = cfg.group_expiry,
			  .capacity = cfg.capacity},
		.only = (const char *const *)cfg.only.v,
		.nonly = cfg.only.n,
		.exclude = (const char *const *)cfg.exclude.v,
		.nexclude = cfg.exclude.n,
		.batch = (size_t)cfg.batch,
	};
	if (cfg.delay) {
		struct delay *d = NULL;
		char err[1024];
		if (delay_new(&d, &run.wopt.layer, err, sizeof(err)) < 0) {
			code = fail(EXIT_USAGE, "%s", err);
			goto out;
		}
		delay_free(d);
	} else if ((code = check_app(&run, true))) {
		goto out;
	}
	if (cfg.processes == 0) {
		code = cfg.delay ? run_delay(&run) : run_worker(&run);
		goto out;
	}
	struct pool_options po = {
		.processes = cfg.processes,
		.child = pool_child,
		.reload = pool_reload,
		.arg = &run,
	};
	signal(SIGPIPE, SIG_IGN);
	log_info("supervising %d worker processes", cfg.processes);
	int rc = pool_run(&po);
	if (rc < 0)
		code = fail(EXIT_FAIL, "cannot start the worker processes: %s", strerror(-rc));
	else
		log_info("stopped");
out:
	config_fini(&cfg);
	return code;
}
