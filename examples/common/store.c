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

int store_app_init(struct laurel_app_env *env, void **data)
{
	const char *path = laurel_app_option(env, "db");
	struct store *st = calloc(1, sizeof(*st));
	int rc;
	if (!st)
		return laurel_app_error(env, -ENOMEM, "out of memory");
	if (!path || !*path)
		path = getenv("LAUREL_EXAMPLE_DB");
	if (!path || !*path)
		path = DEFAULT_PATH;
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		goto fail;
	/* The busy timeout first: switching to WAL and creating the table take locks that another
	 * worker may hold at that moment. journal_mode=WAL is stored in the file, so only the first
	 * opener really switches. */
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, schema, NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	*data = st;
	return 0;
fail:
	rc = laurel_app_error(env, -EIO, "cannot open the database %s: %s", path,
			      st->db ? sqlite3_errmsg(st->db) : "out of memory");
	store_app_fini(st);
	return rc;
}

void store_app_fini(void *data)
{
	struct store *st = data;
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st);
}

const char *store_error(const struct store *st)
{
	return st->error;
}

const char *store_check_data(const struct laurel_value *data, bool create)
{
	bool text = false;
	if (!data || data->type != LAUREL_MAP)
		return "data must be an object";
	for (size_t i = 0; i < data->u.map.len; i++) {
		const char *key = data->u.map.items[i].key.ptr;
		const struct laurel_value *v = &data->u.map.items[i].value;
		size_t max = 0;
		if (strcmp(key, "text") == 0)
			max = STORE_TEXT_MAX;
		else if (strcmp(key, "author") == 0)
			max = STORE_AUTHOR_MAX;
		else
			return "data may only hold \"text\" and \"author\"";
		if (v->type != LAUREL_TEXT)
			return max == STORE_TEXT_MAX ? "text must be a string"
						     : "author must be a string";
		if (v->u.s.len > max)
			return max == STORE_TEXT_MAX ? "text is too long" : "author is too long";
		if (max == STORE_TEXT_MAX && v->u.s.len == 0)
			return "text must not be empty";
		if (memchr(v->u.s.ptr, '\0', v->u.s.len))
			return "strings must not hold NUL";
		text = text || max == STORE_TEXT_MAX;
	}
	if (create && !text)
		return "text is required";
	if (!create && data->u.map.len == 0)
		return "data must change text or author";
	return NULL;
}

static void read_row(sqlite3_stmt *s, struct store_row *row)
{
	row->pk = sqlite3_column_int64(s, 0);
	snprintf(row->room, sizeof(row->room), "%s", (const char *)sqlite3_column_text(s, 1));
	snprintf(row->author, sizeof(row->author), "%s", (const char *)sqlite3_column_text(s, 2));
	snprintf(row->text, sizeof(row->text), "%s", (const char *)sqlite3_column_text(s, 3));
	snprintf(row->created, sizeof(row->created), "%s", (const char *)sqlite3_column_text(s, 4));
}

#define ROW_COLUMNS "pk, room, author, text, created"

/* Reads the row pk (in room, if not NULL) into *row. */
static int get_row(struct store *st, int64_t pk, const char *room, struct store_row *row)
{
	sqlite3_stmt *s = NULL;
	int rc;
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
		read_row(s, row);
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
		 struct store_row *row)
{
	sqlite3_stmt *s = NULL;
	int rc = begin(st);
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

int store_get(struct store *st, int64_t pk, const char *room, struct store_row *row)
{
	return get_row(st, pk, room, row);
}

int store_update(struct store *st, int64_t pk, const char *room, const char *text,
		 const char *author, struct store_row *row)
{
	sqlite3_stmt *s = NULL;
	int rc = begin(st);
	if (rc)
		return rc;
	if (sqlite3_prepare_v2(st->db,
			       "UPDATE messages SET text = coalesce(?1, text),"
			       " author = coalesce(?2, author) WHERE pk = ?3 AND room = ?4",
			       -1, &s, NULL) != SQLITE_OK)
		return end(st, fail(st, "update"));
	if (text)
		sqlite3_bind_text(s, 1, text, -1, SQLITE_TRANSIENT);
	if (author)
		sqlite3_bind_text(s, 2, author, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, pk);
	sqlite3_bind_text(s, 4, room, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, "update");
	sqlite3_finalize(s);
	if (!rc)
		rc = sqlite3_changes(st->db) ? get_row(st, pk, room, row) : STORE_NOT_FOUND;
	return end(st, rc);
}

int store_delete(struct store *st, int64_t pk, const char *room, struct store_row *row)
{
	sqlite3_stmt *s = NULL;
	int rc = begin(st);
	if (rc)
		return rc;
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
	return end(st, rc);
}

int store_list(struct store *st, const char *room, struct laurel_builder *b, const char *key)
{
	sqlite3_stmt *s = NULL;
	struct store_row row;
	int rc;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT " ROW_COLUMNS " FROM messages"
			       " WHERE ?1 IS NULL OR room = ?1 ORDER BY pk",
			       -1, &s, NULL) != SQLITE_OK)
		return fail(st, "select");
	if (room)
		sqlite3_bind_text(s, 1, room, -1, SQLITE_TRANSIENT);
	laurel_build_list(b, key);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		read_row(s, &row);
		store_build_row(b, NULL, &row, true);
	}
	laurel_build_end(b);
	rc = rc == SQLITE_DONE ? 0 : fail(st, "select");
	sqlite3_finalize(s);
	return rc;
}

void store_build_row(struct laurel_builder *b, const char *key, const struct store_row *row,
		     bool with_pk)
{
	laurel_build_map(b, key);
	if (with_pk)
		laurel_build_int(b, "pk", row->pk);
	laurel_build_text(b, "room", row->room);
	laurel_build_text(b, "author", row->author);
	laurel_build_text(b, "text", row->text);
	laurel_build_text(b, "created", row->created);
	laurel_build_end(b);
}

void store_build_change(struct laurel_builder *b, const char *action, const struct store_row *row)
{
	laurel_build_map(b, NULL);
	laurel_build_text(b, "stream", STORE_STREAM);
	laurel_build_map(b, "payload");
	laurel_build_text(b, "action", action);
	laurel_build_int(b, "pk", row->pk);
	store_build_row(b, "data", row, false);
	laurel_build_text(b, "model", STORE_MODEL);
	laurel_build_end(b);
	laurel_build_end(b);
}

void store_group(const char *room, char *out, size_t size)
{
	snprintf(out, size, "binding-%s", room);
}
