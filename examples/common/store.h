/* The SQLite store shared by the data-binding and HTTP API examples: one table of chat-like
 * messages, and the frame in which a change is broadcast to a room.
 *
 * The database file is $LAUREL_EXAMPLE_DB, or ./laurel-example.sqlite3 (relative to the worker's
 * working directory). It is opened in WAL mode with a busy timeout, and every change is one
 * BEGIN IMMEDIATE transaction, so any number of worker processes may share it. A store is opened
 * for one consumer call and closed before it returns: nothing is kept between messages.
 *
 * Rows are JSON objects {"pk", "room", "author", "text", "created"}. Functions return 0,
 * STORE_NOT_FOUND when no row has that pk (in that room, when a room is given), or -EIO (with
 * the reason in store_error()).
 */
#ifndef LAUREL_EXAMPLE_STORE_H
#define LAUREL_EXAMPLE_STORE_H

#include <jansson.h>
#include <stdint.h>

#define STORE_NOT_FOUND 1

/* Field limits, in bytes. */
#define STORE_ROOM_MAX 32
#define STORE_AUTHOR_MAX 64
#define STORE_TEXT_MAX 2000

/* The model name carried in broadcast frames (Channels' "app_label.model"). */
#define STORE_MODEL "examples.message"
/* The stream the rows are bound to. */
#define STORE_STREAM "messages"

struct store;

/* Opens the database (creating the file and table if needed). Returns 0 or -EIO; on -EIO *out is
 * NULL and err (errlen bytes) says why. */
int store_open(struct store **out, char *err, size_t errlen);
/* NULL is a no-op. */
void store_close(struct store *st);
/* The last error, as a sentence. */
const char *store_error(const struct store *st);

/* Checks the client-supplied fields of a row: data must be an object whose keys are among
 * "author" (text, at most STORE_AUTHOR_MAX bytes) and "text" (text, 1..STORE_TEXT_MAX bytes);
 * with create, "text" is required. Returns NULL if it is fine, else a reason (static). */
const char *store_check_data(const json_t *data, int create);

/* Inserts a row; author may be NULL (""). Sets *row (new reference). */
int store_create(struct store *st, const char *room, const char *author, const char *text,
		 json_t **row);
/* The row with pk; room may be NULL (any room). */
int store_get(struct store *st, int64_t pk, const char *room, json_t **row);
/* Changes the fields of data (checked with store_check_data) of the row pk in room; *row is the
 * row after the change. */
int store_update(struct store *st, int64_t pk, const char *room, const json_t *data, json_t **row);
/* Deletes the row pk in room; *row is the row as it was. */
int store_delete(struct store *st, int64_t pk, const char *room, json_t **row);
/* Every row, oldest first, of room (or of every room when room is NULL): a JSON array. */
int store_list(struct store *st, const char *room, json_t **rows);

/* The group of a room's data-binding connections. out must hold 100 bytes. */
void store_group(const char *room, char *out, size_t size);
/* The broadcast frame of a change (Channels 1 data binding):
 * {"stream": "messages", "payload": {"action", "pk", "data", "model"}} with data the row without
 * its pk. Borrows row; returns a new reference. */
json_t *store_change_frame(const char *action, const json_t *row);

#endif
