/* Route tables compiled to PCRE2 programs, and Channels 1's matching rules (routing.h). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "routing/routing.h"

#include <errno.h>
#include <fnmatch.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/util.h"
#include "laurel/layer.h"

/* Includes nest at most this deep, which also stops a table that includes itself. */
#define MAX_DEPTH 16
/* Keyword arguments gathered along one match, and fields cut by includes. */
#define MAX_KWARGS 64

struct group_name {
	char *name;
	uint32_t number;
};

struct filter {
	const char *field; /* borrowed from the table */
	pcre2_code *re;
	struct group_name *names;
	size_t nnames;
};

struct node {
	const struct laurel_route *route;
	struct filter *filters;
	size_t nfilters;
	struct node *children; /* INCLUDE */
	size_t nchildren;
};

struct routing {
	struct node root; /* an include of the routes and the defaults, without filters */
	pcre2_match_data *md;
	uint32_t max_groups;
	const char **channels; /* NULL-terminated, borrowed from the tables */
	size_t nchannels;
};

static const char *const ws_channels[] = {"websocket.connect", "websocket.receive",
					  "websocket.disconnect", NULL};

/* --- Loading --------------------------------------------------------------------------------- */

struct loader {
	struct routing *r;
	char *err;
	size_t errlen;
};

static int load_error(struct loader *ld, const char *path, const struct laurel_route *route,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int load_error(struct loader *ld, const char *path, const struct laurel_route *route,
		      const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (ld->errlen)
		snprintf(ld->err, ld->errlen, "route %s (%s): %s", path, routing_route_name(route),
			 what);
	return -EINVAL;
}

const char *routing_route_name(const struct laurel_route *route)
{
	const char *n = route->name;
	if (!n || !*n)
		return "unnamed";
	while (*n == '&' || *n == ' ')
		n++;
	return *n ? n : "unnamed";
}

static void add_channel(struct routing *r, const char *name)
{
	for (size_t i = 0; i < r->nchannels; i++)
		if (strcmp(r->channels[i], name) == 0)
			return;
	r->channels = xrealloc(r->channels, (r->nchannels + 2) * sizeof(*r->channels));
	r->channels[r->nchannels++] = name;
	r->channels[r->nchannels] = NULL;
}

/* Python's \Z (the very end) is PCRE2's \z; PCRE2's \Z also allows a final newline. */
static char *python_to_pcre(const char *pattern)
{
	struct buf b;
	buf_init(&b);
	for (const char *p = pattern; *p; p++) {
		if (*p == '\\' && p[1]) {
			buf_append_byte(&b, '\\');
			buf_append_byte(&b, p[1] == 'Z' ? 'z' : (unsigned char)p[1]);
			p++;
			continue;
		}
		buf_append_byte(&b, (unsigned char)*p);
	}
	buf_append_byte(&b, '\0');
	return b.data;
}

static int by_number(const void *a, const void *b)
{
	const struct group_name *x = a, *y = b;
	return (x->number > y->number) - (x->number < y->number);
}

static int compile_filter(struct loader *ld, const char *path, const struct laurel_route *route,
			  const struct laurel_filter *f, struct filter *out)
{
	if (!f->pattern || !*f->field)
		return load_error(ld, path, route, "a filter on \"%s\" has no %s", f->field,
				  f->pattern ? "field name" : "pattern");
	char *pattern = python_to_pcre(f->pattern);
	int code;
	PCRE2_SIZE offset;
	uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED;
#ifdef PCRE2_MATCH_INVALID_UTF
	options |= PCRE2_MATCH_INVALID_UTF;
#endif
	out->field = f->field;
	out->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &offset,
				NULL);
	free(pattern);
	if (!out->re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(code, msg, sizeof(msg));
		return load_error(ld, path, route,
				  "filter on \"%s\": bad pattern \"%s\" at offset %zu: %s",
				  f->field, f->pattern, (size_t)offset, (const char *)msg);
	}
	uint32_t groups, count, entry;
	PCRE2_SPTR table;
	pcre2_pattern_info(out->re, PCRE2_INFO_CAPTURECOUNT, &groups);
	pcre2_pattern_info(out->re, PCRE2_INFO_NAMECOUNT, &count);
	pcre2_pattern_info(out->re, PCRE2_INFO_NAMEENTRYSIZE, &entry);
	pcre2_pattern_info(out->re, PCRE2_INFO_NAMETABLE, &table);
	if (groups != count)
		return load_error(ld, path, route,
				  "filter on \"%s\": pattern \"%s\" has groups without a name; "
				  "only named groups (?P<name>...) are allowed (write (?:...) for "
				  "the others)",
				  f->field, f->pattern);
	out->names = xcalloc(count ? count : 1, sizeof(*out->names));
	for (uint32_t i = 0; i < count; i++) {
		PCRE2_SPTR e = table + (size_t)i * entry;
		out->names[i].number = ((uint32_t)e[0] << 8) | e[1];
		out->names[i].name = xstrdup((const char *)e + 2);
	}
	out->nnames = count;
	/* The name table is sorted by name; keyword arguments go in pattern order, as Python's
	 * groupdict() has them. */
	qsort(out->names, count, sizeof(*out->names), by_number);
	if (groups + 1 > ld->r->max_groups)
		ld->r->max_groups = groups + 1;
	return 0;
}

static int load_node(struct loader *ld, struct node *n, const struct laurel_route *route,
		     const char *path, int depth);

static int load_table(struct loader *ld, struct node *parent, const struct laurel_route *routes,
		      const char *path, int depth)
{
	size_t count = 0;
	while (routes && routes[count].kind != LAUREL_ROUTE_END)
		count++;
	parent->children = xrealloc(parent->children,
				    (parent->nchildren + count + 1) * sizeof(*parent->children));
	for (size_t i = 0; i < count; i++) {
		char sub[128];
		if (*path)
			snprintf(sub, sizeof(sub), "%s.%zu", path, i + 1);
		else
			snprintf(sub, sizeof(sub), "%zu", i + 1);
		struct node *n = &parent->children[parent->nchildren++];
		memset(n, 0, sizeof(*n));
		int rc = load_node(ld, n, &routes[i], sub, depth);
		if (rc)
			return rc;
	}
	return 0;
}

static int load_node(struct loader *ld, struct node *n, const struct laurel_route *route,
		     const char *path, int depth)
{
	n->route = route;
	size_t nf = 0;
	while (route->filters && route->filters[nf].field)
		nf++;
	n->filters = xcalloc(nf ? nf : 1, sizeof(*n->filters));
	for (size_t i = 0; i < nf; i++) {
		for (size_t j = 0; j < i; j++)
			if (strcmp(route->filters[j].field, route->filters[i].field) == 0)
				return load_error(ld, path, route, "two filters on \"%s\"",
						  route->filters[i].field);
		n->nfilters++;
		int rc = compile_filter(ld, path, route, &route->filters[i], &n->filters[i]);
		if (rc)
			return rc;
	}
	switch (route->kind) {
	case LAUREL_ROUTE_CONSUMER:
		if (!route->consumer)
			return load_error(ld, path, route, "no consumer");
		if (!route->channels || !route->channels[0])
			return load_error(ld, path, route, "no channel");
		for (size_t i = 0; route->channels[i]; i++)
			if (!laurel_valid_channel(route->channels[i]))
				return load_error(ld, path, route, "invalid channel name \"%s\"",
						  route->channels[i]);
		for (size_t i = 0; route->channels[i]; i++)
			add_channel(ld->r, route->channels[i]);
		return 0;
	case LAUREL_ROUTE_WEBSOCKET:
		if (!route->ws)
			return load_error(ld, path, route, "no websocket consumer");
		for (size_t i = 0; route->ws->groups && route->ws->groups[i]; i++)
			if (!*route->ws->groups[i])
				return load_error(ld, path, route, "an empty group name");
		for (const struct laurel_stream *st = route->ws->streams; st && st->name; st++) {
			if (!*st->name || !st->consumer)
				return load_error(ld, path, route,
						  "stream %zu has no name or no consumer",
						  (size_t)(st - route->ws->streams) + 1);
			for (const struct laurel_stream *o = route->ws->streams; o < st; o++)
				if (strcmp(o->name, st->name) == 0)
					return load_error(ld, path, route, "two streams \"%s\"",
							  st->name);
			for (size_t i = 0; st->consumer->groups && st->consumer->groups[i]; i++)
				if (!*st->consumer->groups[i])
					return load_error(ld, path, route,
							  "an empty group name in stream \"%s\"",
							  st->name);
		}
		for (size_t i = 0; ws_channels[i]; i++)
			add_channel(ld->r, ws_channels[i]);
		return 0;
	case LAUREL_ROUTE_INCLUDE:
		if (!route->routes)
			return load_error(ld, path, route, "include of no routes");
		if (depth >= MAX_DEPTH)
			return load_error(ld, path, route, "includes nested deeper than %d",
					  MAX_DEPTH);
		return load_table(ld, n, route->routes, path, depth + 1);
	case LAUREL_ROUTE_END:
		break;
	}
	return load_error(ld, path, route, "unknown route kind %d", (int)route->kind);
}

int routing_new(struct routing **out, const struct laurel_route *routes,
		const struct laurel_route *defaults, char *err, size_t errlen)
{
	struct routing *r = xcalloc(1, sizeof(*r));
	struct loader ld = {.r = r, .err = err, .errlen = errlen};
	int rc;
	r->max_groups = 1;
	r->channels = xcalloc(1, sizeof(*r->channels));
	if ((rc = load_table(&ld, &r->root, routes, "", 0)))
		goto fail;
	if ((rc = load_table(&ld, &r->root, defaults, "default", 0)))
		goto fail;
	r->md = pcre2_match_data_create(r->max_groups, NULL);
	if (!r->md)
		abort();
	*out = r;
	return 0;
fail:
	routing_free(r);
	return rc;
}

static void free_node(struct node *n)
{
	for (size_t i = 0; i < n->nfilters; i++) {
		pcre2_code_free(n->filters[i].re);
		for (size_t j = 0; j < n->filters[i].nnames; j++)
			free(n->filters[i].names[j].name);
		free(n->filters[i].names);
	}
	free(n->filters);
	for (size_t i = 0; i < n->nchildren; i++)
		free_node(&n->children[i]);
	free(n->children);
}

void routing_free(struct routing *r)
{
	if (!r)
		return;
	free_node(&r->root);
	pcre2_match_data_free(r->md);
	free(r->channels);
	free(r);
}

const char *const *routing_channels(const struct routing *r, size_t *n)
{
	if (n)
		*n = r->nchannels;
	return r->channels;
}

static bool any_glob(const char *const *globs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (fnmatch(globs[i], name, 0) == 0)
			return true;
	return false;
}

const char **routing_select(const struct routing *r, const char *const *only, size_t nonly,
			    const char *const *exclude, size_t nexclude, size_t *n)
{
	const char **sel = xcalloc(r->nchannels + 1, sizeof(*sel));
	size_t k = 0;
	for (size_t i = 0; i < r->nchannels; i++) {
		const char *c = r->channels[i];
		if (nonly && !any_glob(only, nonly, c))
			continue;
		if (any_glob(exclude, nexclude, c))
			continue;
		sel[k++] = c;
	}
	*n = k;
	return sel;
}

/* --- Matching -------------------------------------------------------------------------------- */

/* A field value as matched: a slice of a text or ASCII bytes value of the message. */
struct view {
	const char *field;
	const char *ptr;
	size_t len;
};

struct kwarg {
	const char *name;
	const char *ptr; /* NULL: the group did not take part (nil) */
	size_t len;
};

struct matcher {
	struct routing *r;
	const char *channel;
	const struct laurel_msg *msg;
	struct view views[MAX_DEPTH + 2];
	size_t nviews;
	struct kwarg kwargs[MAX_KWARGS];
	size_t nkwargs;
};

static bool subject(const struct matcher *m, const char *field, struct view *out)
{
	for (size_t i = m->nviews; i-- > 0;)
		if (strcmp(m->views[i].field, field) == 0) {
			*out = m->views[i];
			return true;
		}
	const struct laurel_value *v = laurel_msg_get(m->msg, field);
	if (!v || (v->type != LAUREL_TEXT && v->type != LAUREL_BYTES))
		return false;
	if (v->type == LAUREL_BYTES)
		for (size_t i = 0; i < v->u.s.len; i++)
			if ((unsigned char)v->u.s.ptr[i] >= 0x80)
				return false;
	out->field = field;
	out->ptr = v->u.s.ptr;
	out->len = v->u.s.len;
	return true;
}

/* Matches one filter; on success records its named groups and returns where the match ended. */
static bool match_filter(struct matcher *m, const struct filter *f, size_t *end)
{
	struct view s;
	if (!subject(m, f->field, &s))
		return false;
	int rc = pcre2_match(f->re, (PCRE2_SPTR)s.ptr, s.len, 0, 0, m->r->md, NULL);
	if (rc < 0)
		return false;
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(m->r->md);
	uint32_t pairs = pcre2_get_ovector_count(m->r->md);
	*end = ov[1];
	for (size_t i = 0; i < f->nnames && m->nkwargs < MAX_KWARGS; i++) {
		uint32_t g = f->names[i].number;
		struct kwarg *k = &m->kwargs[m->nkwargs++];
		k->name = f->names[i].name;
		k->ptr = NULL;
		k->len = 0;
		if (g < pairs && g < (uint32_t)rc && ov[2 * g] != PCRE2_UNSET) {
			k->ptr = s.ptr + ov[2 * g];
			k->len = ov[2 * g + 1] - ov[2 * g];
		}
	}
	return true;
}

static bool on_channel(const char *const *channels, const char *channel)
{
	for (size_t i = 0; channels[i]; i++)
		if (strcmp(channels[i], channel) == 0)
			return true;
	return false;
}

static const struct laurel_route *match_node(struct matcher *m, const struct node *n);

static const struct laurel_route *match_children(struct matcher *m, const struct node *n)
{
	for (size_t i = 0; i < n->nchildren; i++) {
		const struct laurel_route *found = match_node(m, &n->children[i]);
		if (found)
			return found;
	}
	return NULL;
}

static const struct laurel_route *match_node(struct matcher *m, const struct node *n)
{
	const struct laurel_route *route = n->route;
	size_t kw_mark = m->nkwargs, view_mark = m->nviews;
	if (route->kind == LAUREL_ROUTE_CONSUMER && !on_channel(route->channels, m->channel))
		return NULL;
	if (route->kind == LAUREL_ROUTE_WEBSOCKET && !on_channel(ws_channels, m->channel))
		return NULL;
	struct view cut[MAX_KWARGS];
	size_t ncut = 0;
	for (size_t i = 0; i < n->nfilters; i++) {
		size_t end;
		if (!match_filter(m, &n->filters[i], &end)) {
			m->nkwargs = kw_mark;
			return NULL;
		}
		if (route->kind == LAUREL_ROUTE_INCLUDE && ncut < ARRAY_SIZE(cut)) {
			struct view s;
			subject(m, n->filters[i].field, &s);
			cut[ncut++] = (struct view){s.field, s.ptr + end, s.len - end};
		}
	}
	if (route->kind != LAUREL_ROUTE_INCLUDE)
		return route;
	/* The cut values are pushed only now, so that every prefix was matched against the
	 * values the include itself received. */
	for (size_t i = 0; i < ncut && m->nviews < ARRAY_SIZE(m->views); i++)
		m->views[m->nviews++] = cut[i];
	const struct laurel_route *found = match_children(m, n);
	m->nviews = view_mark;
	if (!found)
		m->nkwargs = kw_mark;
	return found;
}

int routing_match(struct routing *r, const char *channel, const struct laurel_msg *msg,
		  struct routing_match *out)
{
	struct matcher m = {.r = r, .channel = channel, .msg = msg};
	out->route = NULL;
	out->kwargs = NULL;
	const struct laurel_route *found = match_children(&m, &r->root);
	if (!found)
		return ROUTING_NONE;
	out->route = found;
	out->kwargs = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(out->kwargs);
	for (size_t i = 0; i < m.nkwargs; i++) {
		struct laurel_value *v = laurel_map_put(out->kwargs, root, m.kwargs[i].name);
		if (m.kwargs[i].ptr)
			laurel_value_set_text(out->kwargs, v, m.kwargs[i].ptr, m.kwargs[i].len);
	}
	return 0;
}

void routing_match_fini(struct routing_match *m)
{
	laurel_msg_free(m->kwargs);
	m->kwargs = NULL;
	m->route = NULL;
}

static void each(const struct node *n, void (*fn)(void *, const struct laurel_route *), void *arg)
{
	if (n->route && n->route->kind != LAUREL_ROUTE_INCLUDE)
		fn(arg, n->route);
	for (size_t i = 0; i < n->nchildren; i++)
		each(&n->children[i], fn, arg);
}

void routing_each_route(const struct routing *r, void (*fn)(void *, const struct laurel_route *),
			void *arg)
{
	each(&r->root, fn, arg);
}
