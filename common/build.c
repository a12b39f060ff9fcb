/* The value builder (include/laurel/message.h): one value built call by call into a message of
 * its own. The stack holds the open containers. Their slots do not move while they are open: a
 * container grows (and moves its items) only when a value is added to it, and values are only
 * added to the innermost open one, whose own slot lives in its parent, which is not added to
 * until the innermost is ended. */
#include "laurel/message.h"
#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct laurel_builder {
	struct laurel_msg *m;
	struct laurel_value *top; /* the value built, once started */
	struct laurel_value *open[LAUREL_BUILD_MAX_DEPTH];
	size_t depth;
	char error[160];
};

struct laurel_builder *laurel_builder_new(void)
{
	struct laurel_builder *b = xcalloc(1, sizeof(*b));
	b->m = laurel_msg_new();
	return b;
}

void laurel_builder_free(struct laurel_builder *b)
{
	if (!b)
		return;
	laurel_msg_free(b->m);
	free(b);
}

void laurel_builder_reset(struct laurel_builder *b)
{
	laurel_msg_free(b->m);
	b->m = laurel_msg_new();
	b->top = NULL;
	b->depth = 0;
	b->error[0] = '\0';
}

static int fail(struct laurel_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct laurel_builder *b, const char *fmt, ...)
{
	if (!b->error[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(b->error, sizeof(b->error), fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* The slot for the next value, or NULL after a mistake (recorded). */
static struct laurel_value *slot(struct laurel_builder *b, const char *key)
{
	if (b->error[0])
		return NULL;
	if (b->depth == 0) {
		if (b->top) {
			fail(b, "a second top value (the first is complete)");
			return NULL;
		}
		if (key) {
			fail(b, "key \"%.40s\" given for the top value", key);
			return NULL;
		}
		return b->top = laurel_map_put(b->m, laurel_msg_root(b->m), "v");
	}
	struct laurel_value *c = b->open[b->depth - 1];
	if (c->type == LAUREL_MAP) {
		if (!key) {
			fail(b, "a value without a key inside a map");
			return NULL;
		}
		return laurel_map_put(b->m, c, key);
	}
	if (key) {
		fail(b, "key \"%.40s\" given inside a list", key);
		return NULL;
	}
	return laurel_list_push(b->m, c);
}

static int open_container(struct laurel_builder *b, const char *key, bool map)
{
	if (!b->error[0] && b->depth == LAUREL_BUILD_MAX_DEPTH)
		return fail(b, "nested deeper than %d", LAUREL_BUILD_MAX_DEPTH);
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	if (map)
		laurel_value_set_map(b->m, v, 4);
	else
		laurel_value_set_list(b->m, v, 4);
	b->open[b->depth++] = v;
	return 0;
}

int laurel_build_map(struct laurel_builder *b, const char *key)
{
	return open_container(b, key, true);
}

int laurel_build_list(struct laurel_builder *b, const char *key)
{
	return open_container(b, key, false);
}

int laurel_build_end(struct laurel_builder *b)
{
	if (b->error[0])
		return -EINVAL;
	if (b->depth == 0)
		return fail(b, "an end with no map or list open");
	b->depth--;
	return 0;
}

int laurel_build_textn(struct laurel_builder *b, const char *key, const char *s, size_t len)
{
	if (!s && len)
		return fail(b, "text NULL");
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_set_text(b->m, v, s ? s : "", len);
	return 0;
}

int laurel_build_text(struct laurel_builder *b, const char *key, const char *s)
{
	if (!s)
		return laurel_build_nil(b, key);
	return laurel_build_textn(b, key, s, strlen(s));
}

int laurel_build_textf(struct laurel_builder *b, const char *key, const char *fmt, ...)
{
	char small[256], *p = small;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return fail(b, "a bad format");
	if ((size_t)n >= sizeof(small)) {
		p = xmalloc((size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(p, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	int rc = laurel_build_textn(b, key, p, (size_t)n);
	if (p != small)
		free(p);
	return rc;
}

int laurel_build_bytes(struct laurel_builder *b, const char *key, const void *p, size_t len)
{
	if (!p && len)
		return fail(b, "bytes NULL");
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_set_bytes(b->m, v, p ? p : "", len);
	return 0;
}

int laurel_build_int(struct laurel_builder *b, const char *key, int64_t i)
{
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_set_int(v, i);
	return 0;
}

int laurel_build_double(struct laurel_builder *b, const char *key, double d)
{
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_set_double(v, d);
	return 0;
}

int laurel_build_bool(struct laurel_builder *b, const char *key, bool x)
{
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_set_bool(v, x);
	return 0;
}

int laurel_build_nil(struct laurel_builder *b, const char *key)
{
	return slot(b, key) ? 0 : -EINVAL;
}

int laurel_build_value(struct laurel_builder *b, const char *key, const struct laurel_value *src)
{
	if (!src)
		return fail(b, "value NULL%s%.40s", key ? " for key " : "", key ? key : "");
	struct laurel_value *v = slot(b, key);
	if (!v)
		return -EINVAL;
	laurel_value_copy(b->m, v, src);
	return 0;
}

const struct laurel_value *laurel_build_done(struct laurel_builder *b)
{
	if (b->error[0])
		return NULL;
	if (b->depth) {
		fail(b, "%zu map%s or list%s still open", b->depth, b->depth == 1 ? "" : "s",
		     b->depth == 1 ? "" : "s");
		return NULL;
	}
	if (!b->top) {
		fail(b, "nothing was built");
		return NULL;
	}
	return b->top;
}

const char *laurel_build_error(const struct laurel_builder *b)
{
	return b->error;
}
