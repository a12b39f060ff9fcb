/* The SQLite store of the data-binding and HTTP API examples. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PATH "./laurel-example.sqlite3"
#define BUSY_TIMEOUT_MS 5000

struct store {
	sqlite3 *db;
	char error[256];
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS messages ("
	" pk INTEGER PRIMARY KEY AUTOINCREMENT,"
	" room TEXT NOT NULL,"
	" author TEXT NOT NULL DEFAULT '',"
	" text TEXT NOT NULL,"
	" created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
	"CREATE INDEX IF NOT EXISTS messages_room ON messages (room, pk);";

static int fail(struct store *st, const char *what)
{
	snprintf(st->error, sizeof(st->error), "%s: %s", what, sqlite3_errmsg(st->db));
	return -EIO;
}

int store_open(struct store **out, char *err, size_t errlen)
{
	const char *path = getenv("LAUREL_EXAMPLE_DB");
	struct store *st = calloc(1, sizeof(*st));
	*out = NULL;
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	if (!path || !*path)
		path = DEFAULT_PATH;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		goto fail;
	/* The busy timeout first: switching to WAL and creating the table take locks that another
	 * worker process may hold at that moment. journal_mode=WAL is stored in the file, so only
	 * the first opener really switches. */
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	*out = st;
	return 0;
fail:
	snprintf(err, errlen, "cannot open the database %s: %s", path,
		 st->db ? sqlite3_errmsg(st->db) : "out of memory");
	sqlite3_close(st->db);
	free(st);
	return -EIO;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st);
}

const char *store_error(const struct store *st)
{
	return st->error;
}

const char *store_check_data(const json_t *data, int create)
{
	const char *key;
	json_t *v;
	if (!json_is_object(data))
		return "data must be an object";
	json_object_foreach((json_t *)data, key, v)
	{
		size_t max = 0;
		if (strcmp(key, "text") == 0)
			max = STORE_TEXT_MAX;
		else if (strcmp(key, "author") == 0)
			max = STORE_AUTHOR_MAX;
		else
			return "data may only hold \"text\" and \"author\"";
		if (!json_is_string(v))
			return max == STORE_TEXT_MAX ? "text must be a string"
						     : "author must be a string";
		if (json_string_length(v) > max)
			return max == STORE_TEXT_MAX ? "text is too long" : "author is too long";
		if (max == STORE_TEXT_MAX && json_string_length(v) == 0)
			return "text must not be empty";
		if (memchr(json_string_value(v), '\0', json_string_length(v)))
			return "strings must not hold NUL";
	}
	if (create && !json_object_get(data, "text"))
		return "text is required";
	if (!create && json_object_size(data) == 0)
		return "data must change text or author";
	return NULL;
}

static json_t *row_json(sqlite3_stmt *s)
{
	return json_pack("{s:I, s:s, s:s, s:s, s:s}", "pk", (json_int_t)sqlite3_column_int64(s, 0),
			 "room", (const char *)sqlite3_column_text(s, 1), "author",
			 (const char *)sqlite3_column_text(s, 2), "text",
			 (const char *)sqlite3_column_text(s, 3), "created",
			 (const char *)sqlite3_column_text(s, 4));
}

#define ROW_COLUMNS "pk, room, author, text, created"

/* Reads the row pk (in room, if not NULL) into *row. */
static int get_row(struct store *st, int64_t pk, const char *room, json_t **row)
{
	sqlite3_stmt *s = NULL;
	int rc;
	*row = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT " ROW_COLUMNS " FROM messages"
			       " WHERE pk = ?1 AND (?2 IS NULL OR room = ?2)",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(st, "select");
	sqlite3_bind_int64(s, 1, pk);
	if (room)
		sqlite3_bind_text(s, 2, room, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*row = row_json(s);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = STORE_NOT_FOUND;
	} else {
		rc = fail(st, "select");
	}
	sqlite3_finalize(s);
	return rc;
}

static int begin(struct store *st)
{
	/* IMMEDIATE takes the write lock at once (waiting up to the busy timeout), so two writers
	 * never both hold a read lock that each needs to upgrade. */
	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, "begin");
	return 0;
}

static int end(struct store *st, int rc)
{
	if (rc == 0 && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = fail(st, "commit");
	if (rc != 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int store_create(struct store *st, const char *room, const char *author, const char *text,
		 json_t **row)
{
	sqlite3_stmt *s = NULL;
	int rc = begin(st);
	*row = NULL;
	if (rc)
		return rc;
	if (sqlite3_prepare_v2(st->db, "INSERT INTO messages (room, author, text) VALUES (?, ?, ?)",
			       -1, &s, NULL) != SQLITE_OK)
		return end(st, fail(st, "insert"));
	sqlite3_bind_text(s, 1, room, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, author ? author : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, text, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "insert");
	sqlite3_finalize(s);
	if (!rc)
		rc = get_row(st, sqlite3_last_insert_rowid(st->db), NULL, row);
	return end(st, rc);
}

int store_get(struct store *st, int64_t pk, const char *room, json_t **row)
{
	return get_row(st, pk, room, row);
}

int store_update(struct store *st, int64_t pk, const char *room, const json_t *data, json_t **row)
{
	sqlite3_stmt *s = NULL;
	const json_t *text = json_object_get(data, "text");
	const json_t *author = json_object_get(data, "author");
	int rc = begin(st);
	*row = NULL;
	if (rc)
		return rc;
	if (sqlite3_prepare_v2(st->db,
			       "UPDATE messages SET text = coalesce(?1, text),"
			       " author = coalesce(?2, author) WHERE pk = ?3 AND room = ?4",
			       -1, &s, NULL) != SQLITE_OK)
		return end(st, fail(st, "update"));
	if (text)
		sqlite3_bind_text(s, 1, json_string_value(text), -1, SQLITE_TRANSIENT);
	if (author)
		sqlite3_bind_text(s, 2, json_string_value(author), -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, pk);
	sqlite3_bind_text(s, 4, room, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "update");
	sqlite3_finalize(s);
	if (!rc)
		rc = sqlite3_changes(st->db) ? get_row(st, pk, room, row) : STORE_NOT_FOUND;
	return end(st, rc);
}

int store_delete(struct store *st, int64_t pk, const char *room, json_t **row)
{
	sqlite3_stmt *s = NULL;
	int rc = begin(st);
	if (rc) {
		*row = NULL;
		return rc;
	}
	rc = get_row(st, pk, room, row);
	if (rc)
		return end(st, rc);
	if (sqlite3_prepare_v2(st->db, "DELETE FROM messages WHERE pk = ?", -1, &s, NULL) !=
	    SQLITE_OK)
		rc = fail(st, "delete");
	else {
		sqlite3_bind_int64(s, 1, pk);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "delete");
	}
	sqlite3_finalize(s);
	if (rc) {
		json_decref(*row);
		*row = NULL;
	}
	return end(st, rc);
}

int store_list(struct store *st, const char *room, json_t **rows)
{
	sqlite3_stmt *s = NULL;
	int rc;
	*rows = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT " ROW_COLUMNS " FROM messages"
			       " WHERE ?1 IS NULL OR room = ?1 ORDER BY pk",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(st, "select");
	if (room)
		sqlite3_bind_text(s, 1, room, -1, SQLITE_TRANSIENT);
	json_t *a = json_array();
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		json_array_append_new(a, row_json(s));
	if (rc != SQLITE_DONE) {
		rc = fail(st, "select");
		json_decref(a);
	} else {
		rc = 0;
		*rows = a;
	}
	sqlite3_finalize(s);
	return rc;
}

void store_group(const char *room, char *out, size_t size)
{
	snprintf(out, size, "binding-%s", room);
}

json_t *store_change_frame(const char *action, const json_t *row)
{
	json_t *data = json_deep_copy(row);
	json_t *pk = json_incref(json_object_get(data, "pk"));
	json_object_del(data, "pk");
	return json_pack("{s:s, s:{s:s, s:o, s:o, s:s}}", "stream", STORE_STREAM, "payload",
			 "action", action, "pk", pk, "data", data, "model", STORE_MODEL);
}
