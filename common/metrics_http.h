/* The listener of a metrics endpoint (libevent's evhttp, on an event loop of its owner's):
 * GET and HEAD only, small requests, a 10 s timeout, and every answer marked not to be cached.
 * The owner answers each path; the interface runs it on its loop, a worker pool's supervisor on
 * a thread of its own. */
#ifndef LAUREL_COMMON_METRICS_HTTP_H
#define LAUREL_COMMON_METRICS_HTTP_H

#include <stddef.h>

#include "common/buf.h"

struct event_base;
struct metrics_http;

/* Answers a GET of path (without the query): fills body, sets *type (a Content-Type) and returns
 * the status (200, 404, 503). */
typedef int (*metrics_http_fn)(void *arg, const char *path, size_t len, struct buf *body,
			       const char **type);

/* Listens on addr ("host:port", "[v6]:port", or a unix socket path starting with '/'). Returns
 * NULL with a sentence in err (naming the option, e.g. "--metrics"). */
struct metrics_http *metrics_http_new(struct event_base *base, const char *addr,
				      metrics_http_fn fn, void *arg, char *err, size_t errlen);
/* Stops listening and removes the unix socket; NULL: nothing. */
void metrics_http_free(struct metrics_http *h);
/* In a child forked by the listener's owner: closes the inherited listening socket, so that the
 * address is free again once the owner is gone (the child never touches the rest). */
void metrics_http_close_in_child(struct metrics_http *h);

#endif
