/* The worker's metrics endpoint (see metrics.h). */
#include "worker/metrics.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/metrics_http.h"
#include "common/util.h"
#include "worker/stats.h"

/* The supervisor's loop turns at least once a second; /healthz fails after this long without. */
#define SUPERVISOR_STALE_MS 5000

struct worker_metrics {
	struct wstats *t;
	bool supervised;
	struct event_base *base;
	struct metrics_http *http;
	struct event *stop_ev;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
};

static int serve(void *arg, const char *uri, size_t n, struct buf *body, const char **type)
{
	struct worker_metrics *m = arg;
	int64_t now = util_now_ms();
	if (n == 8 && memcmp(uri, "/metrics", 8) == 0) {
		wstats_write(m->t, body, now);
		*type = "text/plain; version=0.0.4; charset=utf-8";
		return 200;
	}
	if (n == 8 && memcmp(uri, "/healthz", 8) == 0) {
		*type = "application/json";
		int64_t beat = __atomic_load_n(&m->t->supervisor_ms, __ATOMIC_RELAXED);
		if (m->supervised && now - beat > SUPERVISOR_STALE_MS) {
			buf_printf(body,
				   "{\"alive\": false, \"reason\": \"the supervisor's loop has not "
				   "turned for %lld ms\"}\n",
				   (long long)(now - beat));
			return 503;
		}
		buf_append_str(body, "{\"alive\": true}\n");
		return 200;
	}
	if (n == 7 && memcmp(uri, "/readyz", 7) == 0) {
		char why[256];
		*type = "application/json";
		if (wstats_not_ready(m->t, now, why, sizeof(why))) {
			buf_printf(body, "{\"ready\": false, \"reason\": \"%s\"}\n", why);
			return 503;
		}
		buf_append_str(body, "{\"ready\": true}\n");
		return 200;
	}
	buf_append_str(body, "/metrics, /healthz or /readyz\n");
	return 404;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void *run(void *arg)
{
	struct worker_metrics *m = arg;
	event_base_dispatch(m->base);
	return NULL;
}

struct worker_metrics *worker_metrics_new(const char *addr, struct wstats *t, bool supervised,
					  char *err, size_t errlen)
{
	struct worker_metrics *m = xcalloc(1, sizeof(*m));
	m->t = t;
	m->supervised = supervised;
	m->stop_pipe[0] = m->stop_pipe[1] = -1;
	if (!(m->base = event_base_new())) {
		snprintf(err, errlen, "--metrics: cannot make an event loop");
		goto fail;
	}
	if (!(m->http = metrics_http_new(m->base, addr, serve, m, err, errlen)))
		goto fail;
	return m;
fail:
	worker_metrics_stop(m);
	return NULL;
}

int worker_metrics_thread(struct worker_metrics *m, char *err, size_t errlen)
{
	if (pipe2(m->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "--metrics: %s", strerror(errno));
		return -1;
	}
	m->stop_ev = event_new(m->base, m->stop_pipe[0], EV_READ, on_stop, m->base);
	event_add(m->stop_ev, NULL);
	/* The thread takes no signal: the worker has its own handlers. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&m->thread, NULL, run, m);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "--metrics: cannot start its thread: %s", strerror(rc));
		return -1;
	}
	m->running = true;
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

int worker_metrics_serve(struct worker_metrics *m)
{
	/* A forked copy of the supervisor's loop: the kernel's epoll set is made again. */
	if (event_reinit(m->base) < 0)
		return 1;
	struct event *term = evsignal_new(m->base, SIGTERM, on_signal, m->base);
	struct event *intr = evsignal_new(m->base, SIGINT, on_signal, m->base);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	event_base_dispatch(m->base);
	event_free(term);
	event_free(intr);
	return 0;
}

void worker_metrics_stop(struct worker_metrics *m)
{
	if (!m)
		return;
	if (m->running) {
		if (write(m->stop_pipe[1], "", 1) < 0) {
			/* a full pipe is readable already */
		}
		pthread_join(m->thread, NULL);
	}
	if (m->stop_ev)
		event_free(m->stop_ev);
	metrics_http_free(m->http);
	if (m->base)
		event_base_free(m->base);
	for (int i = 0; i < 2; i++)
		if (m->stop_pipe[i] >= 0)
			close(m->stop_pipe[i]);
	free(m);
}

void worker_metrics_forked(struct worker_metrics *m)
{
	if (m)
		metrics_http_close_in_child(m->http);
}
