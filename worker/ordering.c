/* enforce_ordering: the wait channel and the next order in the session. */
#include "worker/ordering.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define RELEASE_BATCH 16

int ordering_wait_channel(const char *reply_channel, char *out)
{
	size_t n = strlen(ORDERING_WAIT_PREFIX) + strlen(reply_channel);
	if (n > LAUREL_NAME_MAX - 1)
		return -EINVAL;
	snprintf(out, LAUREL_NAME_MAX + 1, "%s%s", ORDERING_WAIT_PREFIX, reply_channel);
	char *bang = strchr(out, '!');
	if (bang)
		*bang = '?';
	return laurel_valid_channel(out) ? 0 : -EINVAL;
}

/* The next order recorded in a session (0 if none). */
static int64_t next_of(const struct laurel_msg *session)
{
	int64_t next = 0;
	laurel_msg_get_int(session, ORDERING_SESSION_KEY, &next);
	return next;
}

/* Moves every message waiting for reply_channel back onto its channel. */
static void release(struct laurel_ctx *ctx, const char *wait)
{
	const char *chans[] = {wait};
	struct laurel_received got[RELEASE_BATCH];
	size_t n;
	do {
		n = 0;
		if (laurel_layer_receive(ctx->layer, chans, 1, 0, got, RELEASE_BATCH, &n) < 0) {
			log_error("reply channel %s: cannot read the wait channel %s: %s",
				  ctx->reply_channel, wait, laurel_layer_error(ctx->layer));
			return;
		}
		for (size_t i = 0; i < n; i++) {
			struct laurel_msg *m = got[i].msg;
			char original[LAUREL_NAME_MAX + 1] = "";
			const char *o = laurel_msg_get_text(m, ORDERING_ORIGINAL_KEY, NULL);
			if (o)
				snprintf(original, sizeof(original), "%s", o);
			laurel_map_remove(laurel_msg_root(m), ORDERING_ORIGINAL_KEY);
			int rc = laurel_valid_channel(original)
					 ? consumer_send_patiently(ctx->layer, original, m,
								   ctx->full_wait_ms)
					 : -EINVAL;
			if (rc == -EINVAL)
				log_warn("reply channel %s: a message on %s has no valid %s; "
					 "dropped",
					 ctx->reply_channel, wait, ORDERING_ORIGINAL_KEY);
			else if (rc)
				log_error("reply channel %s: cannot move a waiting message back to "
					  "%s: %s; dropped",
					  ctx->reply_channel, original,
					  rc == LAUREL_FULL ? "the channel stayed full"
							    : laurel_layer_error(ctx->layer));
			laurel_received_fini(&got[i]);
		}
	} while (n == RELEASE_BATCH);
}

enum ordering_verdict ordering_begin(struct laurel_ctx *ctx, int64_t *order)
{
	char wait[LAUREL_NAME_MAX + 1];
	struct laurel_msg *session;
	if (laurel_msg_get_int(ctx->msg, "order", order) || !ctx->reply_channel) {
		log_warn(
			"channel %s, reply channel %s: enforce_ordering needs an integer \"order\" "
			"and a reply channel; dropped",
			ctx->channel, ctx->reply_channel ? ctx->reply_channel : "none");
		return ORDERING_DROP;
	}
	if (ordering_wait_channel(ctx->reply_channel, wait)) {
		log_warn("channel %s, reply channel %s: the reply channel is too long for a wait "
			 "channel; dropped",
			 ctx->channel, ctx->reply_channel);
		return ORDERING_DROP;
	}
	if (laurel_session(ctx, &session)) {
		log_error("channel %s, reply channel %s: cannot load the session for "
			  "enforce_ordering: %s; dropped",
			  ctx->channel, ctx->reply_channel, laurel_layer_error(ctx->layer));
		return ORDERING_DROP;
	}
	int64_t next = next_of(session);
	if (*order == next)
		return ORDERING_RUN;
	if (*order < next) {
		log_warn("channel %s, reply channel %s: order %lld comes after %lld already ran; "
			 "dropped",
			 ctx->channel, ctx->reply_channel, (long long)*order, (long long)next - 1);
		return ORDERING_DROP;
	}
	struct laurel_msg *m = laurel_msg_clone(ctx->msg);
	laurel_msg_set_text(m, ORDERING_ORIGINAL_KEY, ctx->channel);
	int rc = consumer_send_patiently(ctx->layer, wait, m, ctx->full_wait_ms);
	laurel_msg_free(m);
	if (rc) {
		log_error("channel %s, reply channel %s: cannot park order %lld on %s: %s; dropped",
			  ctx->channel, ctx->reply_channel, (long long)*order, wait,
			  rc == LAUREL_FULL ? "the channel stayed full"
					    : laurel_layer_error(ctx->layer));
		return ORDERING_DROP;
	}
	log_debug("channel %s, reply channel %s: order %lld waits for %lld", ctx->channel,
		  ctx->reply_channel, (long long)*order, (long long)next);
	/* The predecessor may have finished between our read of the session and the park; it
	 * released the wait channel before we parked, so look again (Channels does the same). */
	struct laurel_msg *now = NULL;
	if (laurel_layer_session_load(ctx->layer, ctx->reply_channel, &now) == 0 &&
	    next_of(now) == *order)
		release(ctx, wait);
	laurel_msg_free(now);
	return ORDERING_WAITED;
}

void ordering_done(struct laurel_ctx *ctx, int64_t order)
{
	char wait[LAUREL_NAME_MAX + 1];
	struct laurel_msg *session;
	/* The sends go out before the next order is allowed to run. */
	consumer_send_held(ctx);
	if (ctx->outbox)
		consumer_outbox_flush(ctx->layer, ctx->outbox, ctx->full_wait_ms);
	if (!ctx->session_delete) {
		if (laurel_session(ctx, &session) == 0)
			laurel_msg_set_int(session, ORDERING_SESSION_KEY, order + 1);
	}
	consumer_save_session(ctx);
	if (ordering_wait_channel(ctx->reply_channel, wait) == 0)
		release(ctx, wait);
}
