/* The asynchronous Redis client of the channel layer, on a libevent loop: what laurel-interface
 * uses. Same key layout, scripts and sharding as the synchronous client (common/layer_redis.c):
 * both take them from common/redis_layout.c.
 *
 * Receiving never polls: each listened channel keeps one BLPOP outstanding per shard on a
 * connection of its own; when it answers, one script call reads that message and takes whatever
 * else is ready (up to a batch), and only when a batch comes back short does it block again.
 *
 * Callback contract, for every callback passed here:
 *  - it fires exactly once, from the event loop, never from inside the call that took it;
 *  - if the call returns an error, its callback is never called;
 *  - on layer_async_free, pending callbacks fire with -ECANCELED;
 *  - data passed to it is borrowed until it returns.
 * layer_async_free must not be called from inside one of its callbacks.
 *
 * When a server goes away: calls that need it fail at once with -ENOTCONN (no callback), pending
 * ones complete with -ENOTCONN, one warning is logged per outage, and connections are made again
 * by a timer with backoff (100 ms doubling to 2 s); listeners resume by themselves. */
#ifndef LAUREL_COMMON_LAYER_ASYNC_H
#define LAUREL_COMMON_LAYER_ASYNC_H

#include "laurel/layer.h"
#include "common/metrics.h"

struct event_base;
struct layer_async;

/* Same options as laurel_layer_new; Redis URLs only. Connects in the background. Returns 0, or
 * -EINVAL with a message in err. */
int layer_async_new(struct layer_async **out, struct event_base *base,
		    const struct laurel_layer_options *opts, char *err, size_t errlen);
/* The same client over an in-memory layer shared with other threads in this process (the
 * development server): sends go straight to shared, and each listened channel has a thread
 * blocked in laurel_layer_receive that hands messages to the event loop. shared is borrowed and
 * must outlive a. Callbacks keep the contract above. */
int layer_async_new_shared(struct layer_async **out, struct event_base *base,
			   struct laurel_layer *shared);

/* Closes everything; pending callbacks get -ECANCELED. Announcements are left to expire (call
 * layer_async_withdraw first for a clean shutdown). NULL is a no-op. */
void layer_async_free(struct layer_async *a);

/* status: 0, LAUREL_FULL, -ENOTCONN, -EPROTO or -ECANCELED. */
typedef void (*layer_async_done_cb)(int status, void *arg);

/* Sends msg (borrowed; encoded before returning) on channel. cb may be NULL. Returns 0 (cb will
 * fire), or -EINVAL (bad name), -EMSGSIZE, -ENOTCONN (the shard is down) with no callback. */
int layer_async_send(struct layer_async *a, const char *channel, const struct laurel_msg *msg,
		     layer_async_done_cb cb, void *arg);

/* Called for each message received on a listened channel. r is borrowed: the callee may take
 * r->msg (setting it to NULL) or r->recipients; the rest is freed after it returns. */
typedef void (*layer_async_message_cb)(struct laurel_received *r, void *arg);

/* Starts receiving on channel (a normal channel, or a process channel prefix "name!") until
 * layer_async_free, calling cb for every message. Returns 0 or -EINVAL. */
int layer_async_listen(struct layer_async *a, const char *channel, layer_async_message_cb cb,
		       void *arg);

/* Announces prefix ("name!") as a live laurel interface for multicast group sends, renewing it
 * every ttl_s / 3 seconds until layer_async_free. Returns 0 or -EINVAL. */
int layer_async_announce(struct layer_async *a, const char *prefix, int ttl_s);

/* Called when a shard is found to have lost its data while this process was using it (Redis
 * restarted empty, or was flushed): every group membership and session there is gone. Found on
 * the reconnection after an outage: each shard keeps a marker key per announced prefix,
 * "<prefix>:alive:<announced prefix>", set with the announcement and renewed with it (expiring
 * after group_expiry); a shard where it was set and is now missing lost its data. desc names the
 * server. Set before layer_async_announce. */
typedef void (*layer_async_reset_cb)(const char *desc, void *arg);
void layer_async_on_reset(struct layer_async *a, layer_async_reset_cb cb, void *arg);

/* Stops renewing prefix and removes it from the registry. cb may be NULL. Returns 0 (cb will
 * fire), -EINVAL, or -ENOTCONN. */
int layer_async_withdraw(struct layer_async *a, const char *prefix, layer_async_done_cb cb,
			 void *arg);

/* Calls cb once every command sent before this call has been answered (or failed): a barrier
 * for a clean shutdown. cb gets 0, or -ECANCELED at layer_async_free. */
void layer_async_barrier(struct layer_async *a, layer_async_done_cb cb, void *arg);

/* False when a connection that listens on channel is down in an outage (true while it is
 * still connecting at start, and always in local mode): a process whose reply reader is down
 * cannot get answers, and should say so at once. */
bool layer_async_listening(const struct layer_async *a, const char *channel);

/* Adds n to the layer-wide count of control messages this process dropped (the interface's
 * outbox: over its limit, or refused by the server), "<stats prefix>#global#:control_dropped" on
 * the first shard, read by `laurel stats`. Kept here while that shard is down and added with the
 * next announcement renewal once it is up. Not kept in local mode. */
void layer_async_count_dropped(struct layer_async *a, uint64_t n);

/* The number of shards that are connected now, for health reporting. */
size_t layer_async_connected(const struct layer_async *a);

/* What the client did since it started, for metrics: sends by result, every command's round
 * trip (written → answered), and the shards' outages. */
struct layer_async_stats {
	uint64_t sends_ok, sends_full, sends_unreachable, sends_too_big, sends_other;
	struct metrics_histogram round_trip;
	uint64_t outages;	  /* started */
	double outage_seconds;	  /* their total length, the ongoing ones so far included */
	size_t shards, shards_up; /* shards, and those whose command connection works now */
};
void layer_async_stats(const struct layer_async *a, struct layer_async_stats *out);

#endif
