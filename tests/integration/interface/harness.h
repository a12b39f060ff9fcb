/* Helpers shared by the interface's HTTP test programs (child processes and redis-server come
 * from tests/lib): the responder and laurel-interface started and ready, raw HTTP/1.1 clients over
 * TCP or unix sockets with an input buffer (so pipelined responses are read one at a time), and
 * the responder's --record file. Everything polls with a deadline; nothing sleeps for a fixed time
 * to wait for an event. */
#ifndef LAUREL_TESTS_INTERFACE_HARNESS_H
#define LAUREL_TESTS_INTERFACE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/buf.h"
#include "tests/lib/proc.h"

/* The responder, started with --record TMP/name.rec (and --disconnects if asked); waits for
 * "ready". */
struct responder {
	struct proc proc;
	char record[512];
};
int responder_start(struct responder *r, const char *exe, const char *name, int redis_port,
		    bool disconnects);

/* A laurel-interface. args: extra flags (NULL-terminated), after --layer. port 0 means the
 * instance listens only where args say (e.g. -u). Waits until it accepts connections (if port)
 * and has announced itself on Redis (so the layer is connected). */
struct iface {
	struct proc proc;
	int port;
	char prefix[64]; /* its process channel, "laurel.response.XXXXXXXXXX!" */
};
int iface_start(struct iface *f, const char *exe, const char *name, int redis_port, int port,
		const char *const *args);

/* A raw client connection with buffered input. */
struct client {
	int fd;
	struct buf in;
	bool eof;   /* the server closed (FIN or RST) */
	bool reset; /* it was an RST */
};
int client_tcp(struct client *c, const char *host, int port); /* 0 or -1 */
int client_unix(struct client *c, const char *path);
void client_close(struct client *c);
int client_send(struct client *c, const void *data, size_t len); /* 0 or -1 */
int client_sends(struct client *c, const char *s);
/* Half-closes: sends FIN, and can still read. */
int client_shutdown_write(struct client *c);
/* The local port of the connection (the "client" port the interface sees). */
int client_port(struct client *c);
/* Reads more input, waiting up to timeout_ms. Returns bytes read, 0 on EOF, -1 on timeout. */
ssize_t client_fill(struct client *c, int timeout_ms);
/* True if the server closes the connection within timeout_ms with no more bytes sent (bytes
 * already buffered are left alone). */
bool client_wait_eof(struct client *c, int timeout_ms);

struct response {
	int status;
	char *raw; /* the exact bytes of the response, head and body as sent */
	size_t rawlen;
	char *head; /* the head, from the status line to the empty line, NUL-terminated */
	char *body; /* the body after de-chunking, NUL-terminated */
	size_t bodylen;
	bool chunked;  /* framed with Transfer-Encoding: chunked */
	bool by_close; /* framed by the end of the connection */
};
/* Reads one response (a 1xx counts as one). head_request: the response has no body. Returns 0,
 * -1 on timeout, -2 when the connection ended first (r->raw then holds what came). */
int client_response(struct client *c, struct response *r, bool head_request, int timeout_ms);
void response_free(struct response *r);
/* The value of the first header named name (case-insensitive) in r->head, malloc'd, or NULL. */
char *response_header(const struct response *r, const char *name);
/* The head with the Date header's value replaced by "DATE" (for exact comparisons). */
char *response_head_nodate(const struct response *r);

/* One request on a new connection; returns the status (or -1/-2 as client_response). */
int http_once(const char *host, int port, const char *request, struct response *r, int timeout_ms);

/* Writes req on a new connection (then a FIN if half_close) and reads until the server closes or
 * timeout_ms passes. The outcome lists the responses, each as its status (an error page of the
 * interface's own: text/plain, the reason phrase as body) or "status:body" (from the
 * application), then "EOF" (or "PARTIAL[bytes],EOF") or "TIMEOUT"; malloc'd. */
char *http_outcome(int port, const char *req, size_t len, int timeout_ms, bool half_close);

/* The first line of the record file containing needle, waiting up to timeout_ms; malloc'd or
 * NULL. */
char *record_find(const char *record, const char *needle, int timeout_ms);
/* How many lines of the record file contain needle. */
int record_count(const char *record, const char *needle);
/* The reply_channel value of a record line, into out. */
void record_reply_channel(const char *line, char *out, size_t outlen);
/* Checks a record line of an http.request: it starts with the channel and a reply channel of
 * prefix + a local part, and everything after the reply channel equals rest. */
bool record_request_is(const char *line, const char *prefix, const char *rest);

/* Runs a program (argv NULL-terminated) and returns its stdout (malloc'd) and exit status. */
char *run_capture(const char *const *argv, int *status, int timeout_ms);

#endif
