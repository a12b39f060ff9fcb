/* A WebSocket's recoveries under way (recovery.h). */
#include "interface/recovery.h"
#include "interface/asgi_ws.h"
#include "interface/server.h"
#include "interface/websocket.h"
#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* A live message kept during a hold. */
struct held {
	uint64_t offset;
	char epoch[LAUREL_EPOCH_LEN + 1];
	char *env;
	size_t len;
};

struct recovery {
	struct recovery *next;
	char group[LAUREL_NAME_MAX + 1];
	int64_t since_ms;
	struct held *v;
	size_t n, cap, bytes;
};

static struct recovery *find(struct conn *c, const char *group, size_t glen)
{
	for (struct recovery *r = c->recovery; r; r = r->next)
		if (strlen(r->group) == glen && memcmp(r->group, group, glen) == 0)
			return r;
	return NULL;
}

static void drop(struct conn *c, struct recovery *r)
{
	for (struct recovery **p = &c->recovery; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].env);
	free(r->v);
	free(r);
}

/* Sends a text message: m when it is given (a multicast's, counted by its maker), else data. */
static void send_text(struct conn *c, const char *data, size_t len, struct ws_message *m)
{
	if (c->mode != MODE_WS_OPEN || !asgi_ws_check_output(c))
		return;
	if (m) {
		asgi_ws_send(c, m);
		return;
	}
	struct ws_message one;
	ws_message_init(&one, &c->srv->ws_cfg, true, data, len);
	asgi_ws_send(c, &one);
	asgi_ws_message_fini(c->srv, &one);
}

static int by_offset(const void *a, const void *b)
{
	const struct held *x = a, *y = b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Ends r: the status frame, then the kept live messages that are newer than top in epoch
 * (all of them if they are of another epoch), in offset order. */
static void finish(struct conn *c, struct recovery *r, const char *epoch, uint64_t top,
		   bool recovered)
{
	struct buf b;
	buf_init(&b);
	envelope_status(&b, r->group, epoch, (int64_t)top, recovered);
	send_text(c, b.data, b.len, NULL);
	buf_fini(&b);
	if (r->n)
		qsort(r->v, r->n, sizeof(*r->v), by_offset);
	for (size_t i = 0; i < r->n; i++) {
		const struct held *h = &r->v[i];
		if (strcmp(h->epoch, epoch) != 0 || h->offset > top)
			send_text(c, h->env, h->len, NULL);
	}
	drop(c, r);
}

bool recovery_is_hold(const struct laurel_value *ctl)
{
	const struct laurel_value *h = laurel_map_get(ctl, "hold");
	return h && h->type == LAUREL_BOOL && h->u.b;
}

static const char *text_of(const struct laurel_value *map, const char *key, size_t *len)
{
	const struct laurel_value *v = laurel_map_get(map, key);
	if (!v || v->type != LAUREL_TEXT)
		return NULL;
	*len = v->u.s.len;
	return v->u.s.ptr;
}

void recovery_control(struct conn *c, const struct laurel_msg *m, const struct laurel_value *ctl)
{
	size_t glen = 0, elen = 0;
	const char *group = text_of(ctl, "group", &glen);
	if (!group || glen == 0 || glen > LAUREL_NAME_MAX) {
		log_limited(LOG_WARN, "conn %llu: a recovery message without a group; dropped",
			    (unsigned long long)c->id);
		return;
	}
	struct recovery *r = find(c, group, glen);
	if (recovery_is_hold(ctl)) {
		if (!r) {
			r = xcalloc(1, sizeof(*r));
			memcpy(r->group, group, glen);
			r->next = c->recovery;
			c->recovery = r;
		}
		r->since_ms = util_now_ms();
		return;
	}
	const char *epoch = text_of(ctl, "epoch", &elen);
	const struct laurel_value *top = laurel_map_get(ctl, "offset"),
				  *ok = laurel_map_get(ctl, "recovered"),
				  *fin = laurel_map_get(ctl, "final"),
				  *list = laurel_msg_get(m, "messages");
	if (!epoch || elen > LAUREL_EPOCH_LEN || !top || top->type != LAUREL_INT || top->u.i < 0 ||
	    !ok || ok->type != LAUREL_BOOL || !fin || fin->type != LAUREL_BOOL ||
	    (list && list->type != LAUREL_LIST)) {
		log_limited(LOG_WARN, "conn %llu: a malformed recovery message for group %.*s; "
				      "dropped",
			    (unsigned long long)c->id, (int)glen, group);
		return;
	}
	struct buf b;
	buf_init(&b);
	for (size_t i = 0; list && i < list->u.list.len; i++) {
		const struct laurel_value *e = &list->u.list.items[i];
		if (e->type != LAUREL_LIST || e->u.list.len != 2 ||
		    e->u.list.items[0].type != LAUREL_INT)
			continue;
		const struct laurel_value *v = &e->u.list.items[1];
		if (v->type != LAUREL_TEXT && v->type != LAUREL_BYTES)
			continue;
		buf_reset(&b);
		envelope_build_parts(&b, group, glen, epoch, elen, e->u.list.items[0].u.i,
				     v->type == LAUREL_TEXT ? v : NULL,
				     v->type == LAUREL_BYTES ? v : NULL);
		send_text(c, b.data, b.len, NULL);
	}
	buf_fini(&b);
	if (!fin->u.b)
		return;
	char g[LAUREL_NAME_MAX + 1], ep[LAUREL_EPOCH_LEN + 1];
	memcpy(g, group, glen);
	g[glen] = '\0';
	memcpy(ep, epoch, elen);
	ep[elen] = '\0';
	if (!r) { /* no hold seen (it was refused, or came too late): the status alone */
		r = xcalloc(1, sizeof(*r));
		memcpy(r->group, g, glen + 1);
		r->next = c->recovery;
		c->recovery = r;
	}
	finish(c, r, ep, (uint64_t)top->u.i, ok->u.b);
}

void recovery_deliver(struct conn *c, const struct envelope_key *k, const char *env, size_t len,
		      struct ws_message *m)
{
	struct recovery *r = c->recovery ? find(c, k->group, k->glen) : NULL;
	if (r && util_now_ms() - r->since_ms > RECOVERY_HOLD_MAX_MS) {
		log_limited(LOG_WARN,
			    "conn %llu: the recovery of group %s did not come within %d s; going "
			    "on without it",
			    (unsigned long long)c->id, r->group, RECOVERY_HOLD_MAX_MS / 1000);
		finish(c, r, "", 0, false);
		r = NULL;
	}
	if (!r) {
		send_text(c, env, len, m);
		return;
	}
	if (r->bytes + len > RECOVERY_HOLD_MAX_BYTES || k->elen > LAUREL_EPOCH_LEN) {
		log_limited(LOG_WARN,
			    "conn %llu: more than %zu bytes of group %s came while it was being "
			    "recovered; closing (1013)",
			    (unsigned long long)c->id, RECOVERY_HOLD_MAX_BYTES, r->group);
		drop(c, r);
		asgi_ws_close_now(c, 1013);
		return;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 8;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	struct held *h = &r->v[r->n++];
	h->offset = k->offset < 0 ? 0 : (uint64_t)k->offset;
	memcpy(h->epoch, k->epoch, k->elen);
	h->epoch[k->elen] = '\0';
	h->env = xmalloc(len);
	memcpy(h->env, env, len);
	h->len = len;
	r->bytes += len;
}

void recovery_free_all(struct conn *c)
{
	while (c->recovery)
		drop(c, c->recovery);
}
