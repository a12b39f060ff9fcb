/* The reply path: requests waiting for replies by local id, and the dispatch of what arrives on
 * this process's channel, with a group message's fan-out (see reply.h). */
#include "interface/reply.h"
#include "interface/asgi_ws.h"
#include "interface/envelope.h"
#include "interface/recovery.h"
#include "interface/metrics.h"
#include "interface/request.h"
#include "interface/websocket.h"
#include "common/log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void slots_grow(struct server *s)
{
	size_t n = s->nslotbuckets ? s->nslotbuckets * 2 : 1024;
	struct slot **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < s->nslotbuckets; i++) {
		struct slot *sl = s->slots[i], *next;
		for (; sl; sl = next) {
			next = sl->next;
			sl->next = b[sl->id & (n - 1)];
			b[sl->id & (n - 1)] = sl;
		}
	}
	free(s->slots);
	s->slots = b;
	s->nslotbuckets = n;
}

void reply_add(struct server *s, uint64_t id, struct conn *c)
{
	if (s->nslots >= s->nslotbuckets)
		slots_grow(s);
	struct slot *sl = xmalloc(sizeof(*sl));
	sl->id = id;
	sl->conn = c;
	sl->next = s->slots[id & (s->nslotbuckets - 1)];
	s->slots[id & (s->nslotbuckets - 1)] = sl;
	s->nslots++;
}

static struct conn *slot_find(struct server *s, uint64_t id)
{
	if (!s->nslotbuckets)
		return NULL;
	for (struct slot *sl = s->slots[id & (s->nslotbuckets - 1)]; sl; sl = sl->next)
		if (sl->id == id)
			return sl->conn;
	return NULL;
}

void reply_del(struct server *s, uint64_t id)
{
	if (!s->nslotbuckets)
		return;
	struct slot **p = &s->slots[id & (s->nslotbuckets - 1)];
	for (; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			struct slot *sl = *p;
			*p = sl->next;
			free(sl);
			s->nslots--;
			return;
		}
	}
}

struct conn *reply_live(struct server *s, uint64_t id)
{
	struct conn *c = slot_find(s, id);
	return c && c->req && c->req->id == id && !c->req->finished ? c : NULL;
}

/* The local request id in a reply channel name, or 0. */
static uint64_t local_id(const char *channel)
{
	const char *local = strchr(channel, '!');
	unsigned long long id = 0;
	if (!local || local[1] != 'q' || sscanf(local + 2, "%llu", &id) != 1)
		return 0;
	return id;
}

static void on_reply_for(struct server *s, const char *channel, const struct laurel_msg *m)
{
	uint64_t id = local_id(channel);
	struct conn *c = id ? reply_live(s, id) : NULL;
	if (!c) {
		log_debug("reply for %s dropped: its connection is gone", channel);
		return;
	}
	struct request *r = c->req;
	if (r->websocket) {
		asgi_ws_reply(c, m);
		return;
	}
	bool more = false;
	laurel_msg_get_bool(m, "more_content", &more);
	struct buf head;
	buf_init(&head);
	if (!r->started && request_response_start(c, m, more, &head) < 0) {
		buf_fini(&head);
		return;
	}
	size_t len = 0;
	const void *content = laurel_msg_get_bytes(m, "content", &len);
	request_response_body(c, &head, content, content ? len : 0);
	buf_fini(&head);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > s->cfg->max_output) {
		s->counters.slow_readers++;
		log_limited(LOG_WARN,
			    "conn %llu: client reads too slowly (%zu bytes waiting); closing",
			    (unsigned long long)c->id,
			    evbuffer_get_length(bufferevent_get_output(c->bev)));
		r->keep_alive = false;
		request_finish(c);
		return;
	}
	if (!more && r->length >= 0 && r->bytes < (uint64_t)r->length) {
		log_limited(LOG_WARN,
			    "conn %llu: response body on %s ended short of its Content-Length "
			    "(%llu of %lld bytes); closing the connection",
			    (unsigned long long)c->id, r->reply_channel,
			    (unsigned long long)r->bytes, (long long)r->length);
		r->keep_alive = false; /* the client sees the body cut short */
	}
	if (!more)
		request_finish(c);
}

void reply_on_message(struct laurel_received *rcv, void *arg)
{
	struct server *s = arg;
	if (!rcv->nrecipients) {
		if (metrics_is_probe(rcv->channel))
			metrics_probe_heard(s, rcv->msg);
		else
			on_reply_for(s, rcv->channel, rcv->msg);
		return;
	}
	/* A group message for many local connections: a plain text or bytes message is framed
	 * once and the same bytes go to every open WebSocket among them. */
	const struct laurel_value *root = laurel_msg_croot(rcv->msg);
	const struct laurel_value *text = laurel_msg_get(rcv->msg, "text");
	const struct laurel_value *bytes = laurel_msg_get(rcv->msg, "bytes");
	/* A message of a group with a history goes out in its envelope (envelope.h), made once
	 * too. */
	const struct laurel_value *history = laurel_msg_get(rcv->msg, ENVELOPE_KEY);
	bool simple = root->u.map.len == 1 + (history != NULL) &&
		      ((text && text->type == LAUREL_TEXT) || (bytes && bytes->type == LAUREL_BYTES));
	struct buf env;
	buf_init(&env);
	const char *payload = NULL;
	size_t plen = 0;
	bool is_text = text != NULL;
	if (simple && history) {
		simple = envelope_build(&env, history, text, bytes);
		payload = env.data;
		plen = env.len;
		is_text = true;
	} else if (simple) {
		payload = text ? text->u.s.ptr : bytes->u.s.ptr;
		plen = text ? text->u.s.len : bytes->u.s.len;
	}
	/* Framed lazily: plain once for the members without compression, compressed once per
	 * window size for those with it. */
	struct ws_message frame;
	ws_message_init(&frame, &s->ws_cfg, is_text, payload, plen);
	for (size_t i = 0; i < rcv->nrecipients; i++) {
		struct conn *c = reply_live(s, local_id(rcv->recipients[i]));
		if (simple && c && c->mode == MODE_WS_OPEN && !c->closing) {
			if (history && c->recovery) {
				struct envelope_key k;
				envelope_parse(history, &k);
				recovery_deliver(c, &k, env.data, env.len, &frame);
			} else if (asgi_ws_check_output(c)) {
				asgi_ws_send(c, &frame);
			}
		} else {
			on_reply_for(s, rcv->recipients[i], rcv->msg);
		}
	}
	asgi_ws_message_fini(s, &frame);
	buf_fini(&env);
}

void reply_free_all(struct server *s)
{
	for (size_t i = 0; i < s->nslotbuckets; i++) {
		struct slot *sl = s->slots[i], *next;
		for (; sl; sl = next) {
			next = sl->next;
			free(sl);
		}
	}
	free(s->slots);
	s->slots = NULL;
	s->nslotbuckets = s->nslots = 0;
}
