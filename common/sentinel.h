/* Redis Sentinel discovery for a redis+sentinel:// shard, one place for both Redis clients.
 *
 * A watcher thread per shard asks the sentinels in turn (SENTINEL get-master-addr-by-name; the
 * one that answered is asked first next time), keeps a subscription on each of them to
 * +switch-master and to a failover's point of no return (+selected-slave, published by the
 * sentinel leading it: from then on the old master must take no writes, since they would be
 * thrown away when it follows the new one, so sentinel_master refuses until the switch or an
 * abort), and asks again when a client reports the master unusable (sentinel_suspect: a refused or
 * broken connection, READONLY, a ROLE that is not master) and every few seconds besides, so a
 * lost subscription message costs seconds, not forever. Every change of the master's address
 * bumps a generation and makes a descriptor readable, so a client drops its connections to the
 * old master and re-issues its blocked reads on the new one at once. */
#ifndef LAUREL_COMMON_SENTINEL_H
#define LAUREL_COMMON_SENTINEL_H

#include <stddef.h>
#include <stdint.h>

struct layer_endpoint;
struct sentinel;

/* How often the watcher asks again without being told to (ms). */
#define SENTINEL_REFRESH_MS 5000
/* The watcher asks at most this often when clients keep suspecting the master (ms). */
#define SENTINEL_SUSPECT_MIN_MS 100

/* Starts watching ep's master (ep is borrowed and must outlive the watcher). Timeouts are the
 * layer's: connect_ms for each connection to a sentinel, command_ms for each answer. */
void sentinel_new(struct sentinel **out, const struct layer_endpoint *ep, int connect_ms,
		  int command_ms);
/* Stops the thread (within connect_ms) and frees. NULL is a no-op. */
void sentinel_free(struct sentinel *s);

/* The master's address as last learned: 0, or -EAGAIN while no sentinel has named one (err, if
 * given, says why). *gen (may be NULL) counts the addresses learned, from 1. */
int sentinel_master(struct sentinel *s, char *host, size_t hostlen, int *port, uint64_t *gen,
		    char *err, size_t errlen);
/* Waits up to timeout_ms for a first address (a client that cannot go on without one). */
void sentinel_wait(struct sentinel *s, int timeout_ms);
/* The current generation (changes with the master's address). */
uint64_t sentinel_gen(struct sentinel *s);
/* A client found the master unusable: ask the sentinels again now. */
void sentinel_suspect(struct sentinel *s);
/* Readable after the master's address changed, until sentinel_ack. */
int sentinel_fd(const struct sentinel *s);
void sentinel_ack(struct sentinel *s);

/* What the sentinels say of a master now, for `laurel stats`: its address, the failover epoch,
 * and how long it has been reporting itself master (ms; -1 if unknown). Asks every sentinel of
 * ep, synchronously, and keeps the answer with the highest epoch (right after a failover they
 * disagree for a moment). Returns 0, or -ENOTCONN with the reason in err. */
struct sentinel_report {
	char host[256];
	int port;
	long long config_epoch;
	long long master_for_ms;
	char sentinel[300]; /* the sentinel that answered, host:port */
};
int sentinel_report(const struct layer_endpoint *ep, int timeout_ms, struct sentinel_report *out,
		    char *err, size_t errlen);

#endif
