/* laurel runserver: the development server. One process: the interface's event loop on the main
 * thread and N worker threads, over the in-memory channel layer (or Redis with --layer, to try a
 * production-like layout on one machine). */
#include "tool/runserver.h"
#include "common/layer.h"
#include "common/log.h"
#include "common/options.h"
#include "common/util.h"
#include "interface/server.h"
#include "interface/static.h"
#include "worker/app.h"
#include "worker/delay.h"
#include "worker/stats.h"
#include "worker/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LAUREL_EXAMPLES_BUILD_DIR
#define LAUREL_EXAMPLES_BUILD_DIR ""
#endif
#ifndef LAUREL_EXAMPLES_INSTALL_DIR
#define LAUREL_EXAMPLES_INSTALL_DIR ""
#endif

struct config {
	char *app;
	struct option_list app_options;
	char *bind;
	int port;
	int workers;
	struct option_list statics;
	struct layer_flags layer;
	int http_timeout;
	char *metrics;
	char *ws_compression;
	int verbosity;
	bool quiet;
	bool help;
};

#define C(field) offsetof(struct config, field)

static const struct option opts[] = {
	{"app", 'a', OPTION_STRING, C(app), 1, 0, "chat", "LAUREL_APP", "APP",
	 "The application: a shared object (./libmyapp.so) or the name of a bundled example "
	 "(echo, chat, databinding, httpapi, presence)."},
	{"app-option", 0, OPTION_LIST, C(app_options), 0, 0, NULL, NULL, "NAME=VALUE",
	 "Sets an option the application declares (repeatable; --app APP --help lists them). "
	 "Without it they come from the environment variable LAUREL_APP_OPTIONS, NAME=VALUE pairs "
	 "separated by spaces."},
	{"bind", 'b', OPTION_STRING, C(bind), 1, 0, "127.0.0.1", NULL, "ADDRESS",
	 "Address to listen on."},
	{"port", 'p', OPTION_INT, C(port), 0, 65535, "8000", "PORT", "PORT", "Port to listen on."},
	{"workers", 'w', OPTION_INT, C(workers), 1, 256, "2", NULL, "N", "Worker threads."},
	{"static", 0, OPTION_LIST, C(statics), 0, 0, NULL, NULL, "PREFIX=DIR",
	 "Serve the files under DIR at URL PREFIX (repeat for several). A bundled example's "
	 "static files are served at /static/ without it."},
	/* Not LAUREL_LAYER: a development server must not use a deployment's layer unasked. */
	{"layer", 0, OPTION_URLS, C(layer.urls), 0, 0, "memory://", NULL, "URL",
	 "The channel layer: memory:// (in this process), or Redis: " LAYER_URL_FORMS
	 ". Repeat it for shards."},
	LAYER_TUNING_OPTIONS(C, "http.request beyond it: 503 \"Request queue full.\"; a reply to a "
				"fuller channel is retried for 2 s, then dropped."),
	LAYER_HISTORY_OPTION(C),
	{"http-timeout", 't', OPTION_INT, C(http_timeout), 1, 86400, "60", NULL, "SECONDS",
	 "Answer 503 when the application has not responded within this time."},
	{"metrics", 0, OPTION_STRING, C(metrics), 1, 0, NULL, "LAUREL_METRICS", "ADDR",
	 "Serve /metrics (Prometheus: the interface's and the worker threads' families), /healthz "
	 "and /readyz on ADDR: host:port, [ipv6]:port or a unix socket path (docs/operations.md)."},
	{"ws-compression", 0, OPTION_STRING, C(ws_compression), 2, 0, "on", NULL, "on|off",
	 "permessage-deflate for WebSocket clients that offer it (laurel-interface --help has "
	 "the details)."},
	{"verbosity", 'v', OPTION_VERBOSITY, C(verbosity), 0, 2, "1", NULL, "N",
	 OPTION_VERBOSITY_HELP " From 1 on, a line per request and WebSocket event."},
	{"help", 'h', OPTION_FLAG, C(help), 0, 0, NULL, NULL, NULL, "Show this help."},
};

static volatile sig_atomic_t stop_workers;

/* --metrics: the worker threads' and the delay service's records, served with the interface's. */
static void write_worker_metrics(void *arg, struct buf *out)
{
	wstats_write(arg, out, util_now_ms());
}
static struct server *server;

struct worker_thread {
	pthread_t thread;
	struct worker *w;
	void *app_data; /* what the application's init made for this worker */
	bool app_started;
	bool started;
};

static void *run_worker(void *arg)
{
	struct worker_thread *wt = arg;
	worker_run(wt->w, &stop_workers);
	return NULL;
}

static void *run_delay(void *arg)
{
	delay_run(arg, &stop_workers);
	return NULL;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: stopping", (int)sig);
	server_drain(server);
}

/* The path of a bundled example's shared object and static directory, if name is one. */
static bool find_example(const char *name, char *so, size_t solen, char *statics, size_t stlen)
{
	const char *dirs[] = {LAUREL_EXAMPLES_BUILD_DIR, LAUREL_EXAMPLES_INSTALL_DIR};
	struct stat st;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if (!dirs[i][0])
			continue;
		snprintf(so, solen, "%s/%s/lib%s.so", dirs[i], name, name);
		if (stat(so, &st) == 0) {
			snprintf(statics, stlen, "%s/%s/static", dirs[i], name);
			if (stat(statics, &st) != 0) {
				/* In a build tree the sources hold the static files. */
				snprintf(statics, stlen, "%s/../../examples/%s/static", dirs[i], name);
				if (stat(statics, &st) != 0)
					statics[0] = '\0';
			}
			return true;
		}
	}
	return false;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: laurel runserver [OPTION]...\n"
		   "Runs an application in one process for development: the HTTP/WebSocket interface\n"
		   "and worker threads over an in-memory channel layer (no Redis needed).\n\n"
		   "Options:\n");
	options_print(f, opts, ARRAY_SIZE(opts));
	fprintf(f, "\nStop it with Ctrl-C (SIGINT) or SIGTERM.\n");
}

int runserver_main(int argc, char **argv)
{
	struct config cfg = {0};
	char err[512];
	char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
	int npos = 0, status = 0;
	struct app *app = NULL;
	struct laurel_layer *shared = NULL;
	struct worker_thread *threads = NULL;
	struct wstats *stats = NULL;
	struct delay *delay = NULL;
	pthread_t delay_thread;
	bool delay_started = false;
	struct server_config sc = {0};
	struct static_mount mounts[16];
	size_t nmounts = 0;
	struct event_base *base = NULL;

	log_set_program("laurel runserver");
	if (options_parse(opts, ARRAY_SIZE(opts), &cfg, argc, argv, pos, &npos, NULL, err,
			  sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 2;
		goto out;
	}
	if (cfg.help) {
		usage(stdout);
		/* And the options of the application --app names, if it loads. */
		char so[1024], dir[1024];
		const char *p = cfg.app;
		if (!strchr(p, '/') && !strstr(p, ".so"))
			p = find_example(p, so, sizeof(so), dir, sizeof(dir)) ? so : NULL;
		if (p && app_load(&app, p, err, sizeof(err)) == 0)
			app_print_options(app, stdout);
		goto out;
	}
	if (npos) {
		fprintf(stderr, "laurel runserver: unexpected argument \"%s\" (see --help)\n", pos[0]);
		status = 2;
		goto out;
	}
	log_level = log_level_for(cfg.verbosity);
	bool compression;
	if (!server_parse_on_off(cfg.ws_compression, &compression)) {
		fprintf(stderr, "laurel runserver: --ws-compression takes on or off, not \"%s\"\n",
			cfg.ws_compression);
		status = 2;
		goto out;
	}

	char so[1024], example_static[1024] = "";
	const char *path = cfg.app;
	if (!strchr(cfg.app, '/') && !strstr(cfg.app, ".so")) {
		if (!find_example(cfg.app, so, sizeof(so), example_static, sizeof(example_static))) {
			fprintf(stderr,
				"laurel runserver: no bundled example called \"%s\" (echo, chat, "
				"databinding, httpapi, presence) and no such file; give a path like ./libapp.so\n",
				cfg.app);
			status = 2;
			goto out;
		}
		path = so;
	}
	if (app_open(&app, path, (const char *const *)cfg.app_options.v, cfg.app_options.n, err,
		     sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 2;
		goto out;
	}
	for (size_t i = 0; i < cfg.statics.n && nmounts < ARRAY_SIZE(mounts); i++) {
		if (static_mount_parse(&mounts[nmounts], cfg.statics.v[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "laurel runserver: %s\n", err);
			status = 2;
			goto out;
		}
		nmounts++;
	}
	if (!cfg.statics.n && example_static[0]) {
		char spec[1100];
		snprintf(spec, sizeof(spec), "/static/=%s", example_static);
		if (static_mount_parse(&mounts[nmounts], spec, err, sizeof(err)) == 0)
			nmounts++;
	}

	bool memory = strcmp(cfg.layer.urls.v[0], "memory://") == 0;
	if (layer_flags_parse(&cfg.layer, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 2;
		goto out;
	}
	struct laurel_layer_options lo = layer_flags_options(&cfg.layer);
	if (memory && laurel_layer_new(&shared, &lo, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 2;
		goto out;
	}

	/* The interface, with defaults suited to development. */
	sc.bind = cfg.bind;
	sc.port = cfg.port;
	sc.fd = -1;
	sc.tcp = true;
	sc.http_timeout = cfg.http_timeout;
	sc.root_path = "";
	sc.access_log = cfg.verbosity >= 1 ? "-" : NULL;
	sc.runserver_log = true;
	sc.max_connections = 10000;
	sc.max_uri = 8192;
	sc.max_header_bytes = 32768;
	sc.max_headers = 100;
	sc.max_body = 100 << 20;
	sc.body_chunk = 512 << 10;
	sc.header_timeout = 15;
	sc.drain_timeout = 5;
	sc.max_output = 16 << 20;
	sc.websocket_timeout = 86400;
	sc.websocket_connect_timeout = 5;
	sc.ping_interval = 20;
	sc.ping_timeout = 30;
	sc.ws_max_message = 1 << 20;
	sc.ws_max_output = 4 << 20;
	sc.ws_compression = compression;
	sc.ws_compression_threshold = (size_t)atoi(WS_COMPRESSION_THRESHOLD);
	sc.ws_compression_level = atoi(WS_COMPRESSION_LEVEL);
	/* The rules stay cfg's: the interface sends to no group. */
	sc.layer = cfg.layer;
	sc.layer.history = (struct layer_history_rules){0};
	sc.statics = mounts;
	sc.nstatics = nmounts;
	sc.shared_layer = shared;
	if (cfg.metrics) {
		stats = wstats_new((size_t)cfg.workers + 1, false);
		stats->processes = cfg.workers + 1;
		sc.metrics = cfg.metrics;
		sc.metrics_more = write_worker_metrics;
		sc.metrics_more_arg = stats;
	}

	base = event_base_new();
	if (server_new(&server, base, &sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 1;
		goto out;
	}

	/* The asgi.delay service, as laurel-worker --delay runs it. */
	if (shared)
		delay_new_shared(&delay, shared);
	else if (delay_new(&delay, &lo, err, sizeof(err)) < 0) {
		fprintf(stderr, "laurel runserver: %s\n", err);
		status = 2;
		goto out;
	}
	if (stats) {
		/* A thread's record: its pid marks it live; each gets its own number. */
		struct wstats_proc *rec = wstats_claim(stats, cfg.workers);
		rec->pid = cfg.workers + 1;
		delay_set_stats(delay, rec);
	}
	delay_started = pthread_create(&delay_thread, NULL, run_delay, delay) == 0;
	threads = xcalloc((size_t)cfg.workers, sizeof(*threads));
	for (int i = 0; i < cfg.workers; i++) {
		struct worker_options wo = {.routes = app_routes(app), .shared_layer = shared};
		if (stats) {
			wo.stats = stats;
			wo.stats_proc = wstats_claim(stats, i);
			wo.stats_proc->pid = i + 1;
		}
		wo.layer = lo;
		if (app_start(app, i, &threads[i].app_data, err, sizeof(err)) < 0) {
			fprintf(stderr, "laurel runserver: %s\n", err);
			status = 2;
			goto stop;
		}
		threads[i].app_started = true;
		wo.app_data = threads[i].app_data;
		if (worker_new(&threads[i].w, &wo, err, sizeof(err)) < 0) {
			fprintf(stderr, "laurel runserver: %s\n", err);
			status = 2;
			goto stop;
		}
		threads[i].started =
			pthread_create(&threads[i].thread, NULL, run_worker, &threads[i]) == 0;
	}
	struct event *term = evsignal_new(base, SIGTERM, on_signal, NULL);
	struct event *intr = evsignal_new(base, SIGINT, on_signal, NULL);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("laurel runserver: %s (%s) on http://%s:%d/ with %d worker%s over %s\n",
	       app_name(app), path, cfg.bind, cfg.port, cfg.workers, cfg.workers == 1 ? "" : "s",
	       memory ? "the in-memory layer" : cfg.layer.urls.v[0]);
	printf("Quit with Ctrl-C.\n");
	fflush(stdout);
	event_base_dispatch(base);
	event_free(term);
	event_free(intr);
stop:
	stop_workers = 1;
	if (delay_started)
		pthread_join(delay_thread, NULL);
	delay_free(delay);
	for (int i = 0; threads && i < cfg.workers; i++) {
		if (threads[i].started)
			pthread_join(threads[i].thread, NULL);
		worker_free(threads[i].w);
		if (threads[i].app_started)
			app_stop(app, threads[i].app_data);
	}
	free(threads);
out:
	server_free(server);
	if (base)
		event_base_free(base);
	for (size_t i = 0; i < nmounts; i++)
		static_mount_fini(&mounts[i]);
	laurel_layer_free(shared);
	wstats_free(stats);
	app_free(app);
	layer_flags_fini(&cfg.layer);
	options_free(opts, ARRAY_SIZE(opts), &cfg);
	free(pos);
	return status;
}
