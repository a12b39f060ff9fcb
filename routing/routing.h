/* A loaded routing: an application's route table (include/laurel/routing.h) with its patterns
 * compiled, the worker's default routes below it, and the set of channels it listens on.
 * Matching is pure (no I/O). A routing is used by one thread at a time. */
#ifndef LAUREL_ROUTING_ROUTING_H
#define LAUREL_ROUTING_ROUTING_H

#include <stdbool.h>
#include <stddef.h>

#include "laurel/message.h"
#include "laurel/routing.h"

/* routing_match's result when no route matches. */
#define ROUTING_NONE 1

struct routing;

/* Loads routes and then defaults (either may be NULL; both end with LAUREL_ROUTES_END; both are
 * borrowed and must outlive the routing). Returns 0, or -EINVAL with a sentence in err naming the
 * first bad route ("route 2.1 (chat_connect): ...": the position in the table, includes
 * separated by dots, counted from 1), for a bad pattern, a pattern with unnamed groups, a bad or
 * missing channel, a missing consumer, or includes nested deeper than 16. */
int routing_new(struct routing **out, const struct laurel_route *routes,
		const struct laurel_route *defaults, char *err, size_t errlen);
void routing_free(struct routing *r);

/* The channels the routes name, each once, in table order. Borrowed from r. */
const char *const *routing_channels(const struct routing *r, size_t *n);

/* The channels of r narrowed by fnmatch globs: with only non-empty, the channels matching one of
 * them; then minus those matching one of exclude. Returns a NULL-terminated array of borrowed
 * names (free the array itself with free()), and sets *n. */
const char **routing_select(const struct routing *r, const char *const *only, size_t nonly,
			    const char *const *exclude, size_t nexclude, size_t *n);

/* Calls fn for every route that runs a consumer (CONSUMER and WEBSOCKET, the defaults included),
 * in table order. */
void routing_each_route(const struct routing *r, void (*fn)(void *, const struct laurel_route *),
			void *arg);

/* The route's name for log lines and metrics: its consumer's (or ws consumer's, or included
 * table's) name as the LAUREL_ROUTE macros wrote it, without the '&' of LAUREL_ROUTE_WS(&chat)
 * and LAUREL_INCLUDE(&table); "unnamed" without one. */
const char *routing_route_name(const struct laurel_route *route);

struct routing_match {
	const struct laurel_route *route; /* borrowed from the tables */
	struct laurel_msg *kwargs;	  /* root map: name -> text or nil; freed by fini */
};

/* Finds the first route for a message received on channel. Returns 0 and fills m (release it
 * with routing_match_fini), or ROUTING_NONE (m is then empty and needs no fini). */
int routing_match(struct routing *r, const char *channel, const struct laurel_msg *msg,
		  struct routing_match *m);
void routing_match_fini(struct routing_match *m);

#endif
