/* The SQLite store shared by the data-binding and HTTP API examples: one table of chat-like
 * messages, and the frame in which a change is broadcast to a room.
 *
 * Each worker opens the database once, in the application's init hook (store_app_init), and
 * closes it in fini: every laurel-worker process and every thread of laurel runserver has its own
 * connection, which its consumers get with laurel_ctx_app_data. The file is the application
 * option "db", else $LAUREL_EXAMPLE_DB, else ./laurel-example.sqlite3 (relative to the worker's
 * working directory). It is opened in WAL mode with a busy timeout, and every change is one
 * BEGIN IMMEDIATE transaction, so any number of workers may share it.
 *
 * Rows are built as JSON objects {"pk", "room", "author", "text", "created"}. Functions return 0,
 * STORE_NOT_FOUND when no row has that pk (in that room, when a room is given), or -EIO (with
 * the reason in store_error()).
 */
#ifndef LAUREL_EXAMPLE_STORE_H
#define LAUREL_EXAMPLE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "laurel/routing.h"

#define STORE_NOT_FOUND 1

/* Field limits, in bytes. */
#define STORE_ROOM_MAX 32
#define STORE_AUTHOR_MAX 64
#define STORE_TEXT_MAX 2000

/* The model name carried in broadcast frames (Channels' "app_label.model"). */
#define STORE_MODEL "examples.message"
/* The stream the rows are bound to. */
#define STORE_STREAM "messages"
/* The group of a room's data-binding connections, a template on the keyword argument room. */
#define STORE_GROUP "binding-{room}"

/* The application's options, init and fini: LAUREL_APP(name, routes, .init = store_app_init,
 * .fini = store_app_fini, .options = STORE_OPTIONS). init fails when the database cannot be
 * opened, and the worker does not start. */
#define STORE_OPTIONS                                                                              \
	LAUREL_APP_OPTIONS({"db", NULL,                                                            \
			    "the SQLite file (default $LAUREL_EXAMPLE_DB, else "                   \
			    "./laurel-example.sqlite3)"})
int store_app_init(struct laurel_app_env *env, void **data);
void store_app_fini(void *data);

struct store;

/* A row as read from the table. */
struct store_row {
	int64_t pk;
	char room[STORE_ROOM_MAX + 1];
	char author[STORE_AUTHOR_MAX + 1];
	char text[STORE_TEXT_MAX + 1];
	char created[32];
};

/* The last error, as a sentence. */
const char *store_error(const struct store *st);

/* Checks the client-supplied fields of a row: data must be a map whose keys are among "author"
 * (text, at most STORE_AUTHOR_MAX bytes) and "text" (text, 1..STORE_TEXT_MAX bytes); with create,
 * "text" is required. Returns NULL if it is fine, else a reason (static). */
const char *store_check_data(const struct laurel_value *data, bool create);

/* Inserts a row; author may be NULL (""). */
int store_create(struct store *st, const char *room, const char *author, const char *text,
		 struct store_row *row);
/* The row with pk; room may be NULL (any room). */
int store_get(struct store *st, int64_t pk, const char *room, struct store_row *row);
/* Changes text and author (NULL: unchanged) of the row pk in room; *row is the row after. */
int store_update(struct store *st, int64_t pk, const char *room, const char *text,
		 const char *author, struct store_row *row);
/* Deletes the row pk in room; *row is the row as it was. */
int store_delete(struct store *st, int64_t pk, const char *room, struct store_row *row);
/* Every row, oldest first, of room (or of every room when room is NULL), as a list added to b
 * (key as for laurel_build_list). */
int store_list(struct store *st, const char *room, struct laurel_builder *b, const char *key);

/* Adds the row to b as a map under key: with its pk, or without it (the "data" of a frame). */
void store_build_row(struct laurel_builder *b, const char *key, const struct store_row *row,
		     bool with_pk);
/* Builds in b the broadcast frame of a change (Channels 1 data binding):
 * {"stream": "messages", "payload": {"action", "pk", "data", "model"}} with data the row without
 * its pk. */
void store_build_change(struct laurel_builder *b, const char *action, const struct store_row *row);
/* STORE_GROUP for a room that is not a keyword argument (the HTTP API's comes from the body). out
 * must hold LAUREL_NAME_MAX + 1 bytes. */
void store_group(const char *room, char *out, size_t size);

#endif
