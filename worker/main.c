/* laurel-worker: runs an application's consumers on the messages of its channels (docs/worker.md).
 *
 * The options are one declarative table; parsing, the environment, defaults and --help are all
 * generated from it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/layer.h"
#include "common/log.h"
#include "common/options.h"
#include "common/util.h"
#include "laurel/layer.h"
#include "routing/routing.h"
#include "worker/app.h"
#include "worker/consumer.h"
#include "worker/delay.h"
#include "worker/metrics.h"
#include "worker/pool.h"
#include "worker/stats.h"
#include "worker/worker.h"

#ifndef LAUREL_VERSION
#define LAUREL_VERSION "0.1.0"
#endif


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

struct config {
	struct layer_flags layer;
	struct option_list only;
	struct option_list exclude;
	char *app;
	struct option_list app_options;
	char *metrics;
	int processes;
	int batch;
	int verbosity;
	bool delay;
	bool help;
	bool version;
};

#define CFG(field) offsetof(struct config, field)

static const struct option opts[] = {
	{"app", 0, OPTION_STRING, CFG(app), 1, 0, NULL, "LAUREL_APP", "PATH",
	 "The application: a shared object that exports its routing with LAUREL_APP. Required "
	 "unless --delay is given."},
	{"app-option", 0, OPTION_LIST, CFG(app_options), 0, 0, NULL, NULL, "NAME=VALUE",
	 "Sets an option the application declares (repeatable; --app PATH --help lists them). "
	 "Without it they come from the environment variable LAUREL_APP_OPTIONS, NAME=VALUE pairs "
	 "separated by spaces."},
	{"delay", 0, OPTION_FLAG, CFG(delay), 0, 0, NULL, NULL, NULL,
	 "Run the asgi.delay service instead of an application: messages {channel, delay: ms, "
	 "content} sent to asgi.delay are kept in Redis (surviving a restart) and sent to channel "
	 "when due; --app and the channel options are ignored. One process (--processes 1) is "
	 "enough."},
	LAYER_OPTIONS(CFG, "a reply to a fuller channel is retried for 2 s, then dropped."),
	LAYER_HISTORY_OPTION(CFG),
	{"processes", 'n', OPTION_INT, CFG(processes), 0, 1024, "1", NULL, "N",
	 "Worker processes, kept running by a supervisor that replaces one that dies. 0 runs the "
	 "worker in this process, without a supervisor."},
	{"only-channels", 0, OPTION_URLS, CFG(only), 0, 0, NULL, NULL, "GLOB",
	 "Listen only on the routing's channels that match one of these globs (repeatable)."},
	{"exclude-channels", 0, OPTION_URLS, CFG(exclude), 0, 0, NULL, NULL, "GLOB",
	 "Do not listen on the channels that match one of these globs (repeatable)."},
	{"batch", 0, OPTION_INT, CFG(batch), 1, 1000, "8", NULL, "N",
	 "Messages taken from the layer in one round trip when several are ready."},
	{"metrics", 0, OPTION_STRING, CFG(metrics), 1, 0, NULL, "LAUREL_METRICS", "ADDR",
	 "Serve /metrics (Prometheus), /healthz and /readyz on ADDR: host:port, [ipv6]:port or a "
	 "unix socket path. One endpoint for the whole pool: the supervisor sums its worker "
	 "processes' counts (docs/operations.md). Off by default."},
	{"verbosity|verbose", 'v', OPTION_VERBOSITY, CFG(verbosity), 0, 2, "0", NULL, "N",
	 OPTION_VERBOSITY_HELP " Information is each process start and stop, debug every message."},
	{"help", 'h', OPTION_FLAG, CFG(help), 0, 0, NULL, NULL, NULL, "Show this help."},
	{"version", 0, OPTION_FLAG, CFG(version), 0, 0, NULL, NULL, NULL, "Print the version."},
};

#define fail(code, ...) options_complain("laurel-worker", (code), __VA_ARGS__)

static void config_fini(struct config *cfg)
{
	options_free(opts, ARRAY_SIZE(opts), cfg);
}

/* Parses argv into cfg (common/options.h); the worker takes no operands. */
static int parse_args(struct config *cfg, int argc, char **argv)
{
	char err[512];
	int npos = 0;
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	int rc = 0;
	if (!pos)
		return fail(EXIT_USAGE, "out of memory");
	if (options_parse(opts, ARRAY_SIZE(opts), cfg, argc, argv, pos, &npos, NULL, err,
			  sizeof(err)) < 0)
		rc = fail(EXIT_USAGE, "%s", err);
	else if (npos > 0)
		rc = fail(EXIT_USAGE, "unexpected argument \"%s\" (see laurel-worker --help)",
			  pos[0]);
	free(pos);
	return rc;
}

/* --- Help ----------------------------------------------------------------------------------- */

static void print_help(FILE *f)
{
	fprintf(f, "Usage: laurel-worker --app PATH [OPTIONS]\n"
		   "       laurel-worker --delay [OPTIONS]\n\n");
	options_wrap(f,
		      "Takes messages off the channels that the application's routing names, in a "
		      "laurel (asgi_redis 1.4 compatible) channel layer, and runs the routed "
		      "consumers.",
		      0, 0);
	fprintf(f, "\nOptions:\n");
	options_print(f, opts, ARRAY_SIZE(opts));
	fprintf(f, "\nSignals:\n%s", signal_help);
	fprintf(f, "\nExit status:\n%s", exit_help);
	fprintf(f, "\nSee docs/worker.md.\n");
}

/* --- Running -------------------------------------------------------------------------------- */

struct run {
	struct config *cfg;
	struct worker_options wopt;
	char program[64];
	int slot; /* in the pool; 0 without one */
	struct wstats *stats;		/* with --metrics */
	struct worker_metrics *metrics; /* its listener (the supervisor's thread) */
};

static volatile sig_atomic_t stop_requested;
/* Written to by the stop handler; the layer watches the read end, so a receive blocked in Redis
 * returns at once. */
static int stop_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
	(void)sig;
	int saved = errno;
	stop_requested = 1;
	if (stop_pipe[1] >= 0 && write(stop_pipe[1], "", 1) < 0) {
		/* full: it is readable already */
	}
	errno = saved;
}

static void watch_stop(struct laurel_layer *layer)
{
	if (stop_pipe[0] >= 0)
		laurel_layer_watch_fd(layer, stop_pipe[0]); /* -ENOTSUP for memory: the 1 s check */
}

static void install_stop_handlers(void)
{
	if (stop_pipe[0] < 0 && pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		stop_pipe[0] = stop_pipe[1] = -1;
	struct sigaction sa = {.sa_handler = on_stop, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

static int open_app(struct run *run, struct app **a, char *err, size_t errlen)
{
	const struct option_list *o = &run->cfg->app_options;
	return app_open(a, run->cfg->app, (const char *const *)o->v, o->n, err, errlen);
}

/* Loads the application and its routing once, to report every problem before anything starts
 * (its init runs in each worker process, not here). */
static int check_app(struct run *run, bool announce)
{
	struct app *a = NULL;
	struct worker *w = NULL;
	char err[1024];
	if (open_app(run, &a, err, sizeof(err)) < 0)
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
	void *data = NULL;
	if (open_app(run, &a, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return EXIT_USAGE;
	}
	if (app_start(a, run->slot, &data, err, sizeof(err)) < 0) {
		log_error("%s", err);
		app_free(a);
		return EXIT_USAGE;
	}
	run->wopt.routes = app_routes(a);
	run->wopt.app_data = data;
	if (worker_new(&w, &run->wopt, err, sizeof(err)) < 0) {
		log_error("%s: %s", run->cfg->app, err);
		app_stop(a, data);
		app_free(a);
		return EXIT_USAGE;
	}
	watch_stop(worker_layer(w));
	log_debug("worker process running");
	worker_run(w, &stop_requested);
	log_debug("worker process stopping");
	worker_free(w);
	app_stop(a, data);
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
	watch_stop(delay_layer(d));
	delay_set_stats(d, run->wopt.stats_proc);
	log_info("delay service running on %s", DELAY_CHANNEL);
	delay_run(d, &stop_requested);
	log_debug("delay service stopping");
	delay_free(d);
	return EXIT_OK;
}

static int pool_child(void *arg, int slot, struct wstats_proc *rec)
{
	struct run *run = arg;
	run->slot = slot;
	worker_metrics_forked(run->metrics);
	run->wopt.stats = run->stats;
	run->wopt.stats_proc = rec;
	snprintf(run->program, sizeof(run->program), "laurel-worker[%d]", (int)getpid());
	log_set_program(run->program);
	return run->cfg->delay ? run_delay(run) : run_worker(run);
}

/* The pool's metrics process. */
static int pool_metrics(void *arg)
{
	struct run *run = arg;
	log_set_program("laurel-worker[metrics]");
	prctl(PR_SET_NAME, "laurel-metrics"); /* what ps and top show */
	/* The listener stays the supervisor's (its unix socket too): nothing is freed here. */
	return worker_metrics_serve(run->metrics);
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
		if (cfg.app) {
			struct app *a = NULL;
			char err[1024];
			if (app_load(&a, cfg.app, err, sizeof(err)) == 0)
				app_print_options(a, stdout);
			else
				printf("\n(The application's options cannot be listed: %s)\n", err);
			app_free(a);
		}
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

	log_level = log_level_for(cfg.verbosity);
	{
		char err[512];
		if (layer_flags_parse(&cfg.layer, err, sizeof(err)) < 0) {
			code = fail(EXIT_USAGE, "%s", err);
			goto out;
		}
	}
	run.wopt = (struct worker_options){
		.layer = layer_flags_options(&cfg.layer),
		.only = (const char *const *)cfg.only.v,
		.nonly = cfg.only.n,
		.exclude = (const char *const *)cfg.exclude.v,
		.nexclude = cfg.exclude.n,
		.batch = (size_t)cfg.batch,
	};
	{
		/* Refuse to start with credentials or permissions that cannot work. */
		char err[1024];
		if (layer_check_options(&run.wopt.layer, err, sizeof(err)) < 0) {
			code = fail(EXIT_FAIL, "%s", err);
			goto out;
		}
	}
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
	if (cfg.metrics) {
		/* A pool's children count in memory mapped before they are forked; a worker
		 * without a supervisor, in its own. */
		size_t n = cfg.processes ? (size_t)cfg.processes * 2 + 1 : 1;
		char err[512];
		if (!(run.stats = wstats_new(n, cfg.processes > 0))) {
			code = fail(EXIT_FAIL, "--metrics: cannot map %zu counter records", n);
			goto out;
		}
		run.stats->supervisor_ms = util_now_ms();
		if (cfg.processes == 0) {
			run.wopt.stats = run.stats;
			run.wopt.stats_proc = wstats_claim(run.stats, 0);
			run.wopt.stats_proc->pid = (int32_t)getpid();
		}
		if (!(run.metrics = worker_metrics_new(cfg.metrics, run.stats, cfg.processes > 0,
						       err, sizeof(err)))) {
			code = fail(EXIT_USAGE, "%s", err);
			goto out;
		}
		if (cfg.processes == 0 && worker_metrics_thread(run.metrics, err, sizeof(err)) < 0) {
			code = fail(EXIT_FAIL, "%s", err);
			goto out;
		}
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
		.stats = run.stats,
		.helper = run.metrics ? pool_metrics : NULL,
	};
	signal(SIGPIPE, SIG_IGN);
	log_info("supervising %d worker processes", cfg.processes);
	int rc = pool_run(&po);
	if (rc < 0)
		code = fail(EXIT_FAIL, "cannot start the worker processes: %s", strerror(-rc));
	else
		log_info("stopped");
out:
	worker_metrics_stop(run.metrics);
	wstats_free(run.stats);
	layer_flags_fini(&cfg.layer);
	config_fini(&cfg);
	return code;
}
