/* The worker's side of the consumer API (include/laurel/consumer.h): the context a consumer runs
 * in, running the routed consumer, and sending what it held once it returned. */
#ifndef LAUREL_WORKER_CONSUMER_H
#define LAUREL_WORKER_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "laurel/consumer.h"
#include "laurel/layer.h"
#include "laurel/routing.h"

/* A full channel is retried this long when held sends are flushed (SPEC §6). */
#define CONSUMER_FULL_WAIT_MS 2000
/* A full channel the process reads itself is not waited for: its messages are carried to the
 * next flush, for at most this long and this many (then they are waited for as above). */
#define CONSUMER_CARRY_MS 30000
#define CONSUMER_CARRY_MAX 10000

struct consumer_held {
	bool group; /* name is a group: sent with laurel_layer_group_send */
	char name[LAUREL_NAME_MAX + 1];
	struct laurel_msg *msg;
};

/* Channel sends of several consumers, kept back until a batch of messages has been handled so
 * that they go out pipelined (laurel_layer_send_many), in the order they were made. */
struct consumer_out {
	char channel[LAUREL_NAME_MAX + 1];
	struct laurel_msg *msg; /* owned */
	char *origin;		/* "channel C, reply channel R", for log lines */
	int64_t full_since;	/* when a full channel of its own first refused it; 0: never */
};
struct consumer_outbox {
	struct consumer_out *items; /* the carried ones first, in the order they were made */
	size_t n, cap;
	/* The channels this process reads (borrowed; none if NULL). Waiting for one of them to
	 * have room would stop this process from reading it, and when every reader of an internal
	 * channel waits so, nobody does: a full one of these is carried instead. */
	const char *const *own;
	size_t nown;
	struct wstats_proc *stats; /* where its sends are counted (worker/stats.h); may be NULL */
};

/* Sends everything in the outbox: one laurel_layer_send_many, then a full channel or an
 * unreachable server is retried one message at a time for up to full_wait_ms — except a full
 * channel of ob->own, whose messages stay in the outbox for the next flush (in order, for up to
 * CONSUMER_CARRY_MS and CONSUMER_CARRY_MAX). What cannot be sent is logged and dropped. Returns
 * the number dropped; consumer_outbox_carried tells what stayed. */
size_t consumer_outbox_flush(struct laurel_layer *layer, struct consumer_outbox *ob,
			     int full_wait_ms);
/* Adds a message (owned from now on) for channel; origin (copied) starts its log lines. */
void consumer_outbox_add(struct consumer_outbox *ob, const char *channel, struct laurel_msg *msg,
			 const char *origin);
/* The number of messages the last flush kept for the next one. */
static inline size_t consumer_outbox_carried(const struct consumer_outbox *ob)
{
	return ob->n;
}
/* Drops what is still in the outbox (nothing is sent) and frees it. */
void consumer_outbox_fini(struct consumer_outbox *ob);

/* Caller-owned (consumer_ctx_init / consumer_ctx_fini); opaque to applications. */
struct laurel_ctx {
	struct laurel_layer *layer;
	const char *channel;
	const struct laurel_msg *msg;
	const char *reply_channel; /* NULL if the message has none */
	const struct laurel_msg *kwargs;
	struct consumer_held *held;
	size_t nheld, cap;
	struct laurel_msg *session; /* loaded on demand */
	char *session_was;	    /* its encoding when loaded, to save only a change */
	size_t session_was_len;
	bool session_delete;
	int full_wait_ms;
	/* Where held channel sends go when the consumer is done: NULL sends them at once. */
	struct consumer_outbox *outbox;
	const char *stream;		       /* the stream consumer running, in a demultiplexer */
	const struct laurel_value *json;       /* laurel_ctx_json's value, once known */
	struct laurel_msg *json_holder;	       /* owns the parsed text */
	bool accepted;			       /* an accept is held */
	void *app_data;			       /* laurel_ctx_app_data */
	struct laurel_builder **builders;      /* laurel_ctx_builder's, freed by fini */
	size_t nbuilders;
	struct laurel_msg **parsed; /* laurel_json_parse's values, freed by fini */
	size_t nparsed;
	char error[256];
};

/* The worker's default routes (SPEC §6), below every application's: websocket.connect accepts,
 * websocket.receive and websocket.disconnect do nothing. */
extern const struct laurel_route consumer_default_routes[];

/* Sets up ctx for msg received on channel. Everything is borrowed until consumer_ctx_fini; kwargs
 * may be NULL. reply_channel is taken from the message when it is valid text. */
void consumer_ctx_init(struct laurel_ctx *ctx, struct laurel_layer *layer, const char *channel,
		       const struct laurel_msg *msg, const struct laurel_msg *kwargs);
/* Drops whatever is still held and frees the session. */
void consumer_ctx_fini(struct laurel_ctx *ctx);

/* Runs route's consumer (for a websocket route: joins or leaves its groups and runs the
 * callback for the channel). Returns what the consumer returned: 0, LAUREL_CONSUME_LATER or a
 * negative errno (ctx->error may then say why). */
int consumer_run(struct laurel_ctx *ctx, const struct laurel_route *route);

/* After a consumer returned 0: saves (or deletes) the session if it changed, then sends the held
 * messages in order, retrying a full channel for ctx->full_wait_ms. A message that cannot be sent
 * is logged and dropped, and the others are still sent. With ctx->outbox set, channel sends are
 * moved there (a group send first flushes the outbox, to keep the order). Returns the number
 * dropped so far. */
size_t consumer_flush(struct laurel_ctx *ctx);
/* The two halves of consumer_flush, for enforce_ordering, which sends before it saves. */
void consumer_save_session(struct laurel_ctx *ctx);
size_t consumer_send_held(struct laurel_ctx *ctx);
/* Forgets what the consumer held and its unsaved session changes (after a failure). */
void consumer_discard(struct laurel_ctx *ctx);

/* Sends m to channel, retrying a full channel until wait_ms passed. Returns as laurel_layer_send. */
int consumer_send_patiently(struct laurel_layer *layer, const char *channel,
			    const struct laurel_msg *m, int wait_ms);

/* After a consumer returned LAUREL_CONSUME_LATER: sends the message back to its channel with
 * "__retries__" + 1, unless that would exceed LAUREL_MAX_RETRIES (then it is logged and dropped).
 * Returns 0 if re-queued, 1 if dropped, or an error. */
int consumer_requeue(struct laurel_ctx *ctx);

#endif
