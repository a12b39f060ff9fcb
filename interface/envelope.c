/* The JSON envelope of a group message with a history (envelope.h). */
#include "interface/envelope.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

/* A JSON string: '"' and '\' escaped, control characters as \u00XX, every other byte as it is
 * (the text of a text message is UTF-8 already). */
static void json_string(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	buf_reserve(out, n + 2);
	buf_append_byte(out, '"');
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_append(out, s + run, i - run);
		run = i + 1;
		if (c == '"' || c == '\\') {
			buf_append_byte(out, '\\');
			buf_append_byte(out, c);
		} else if (c == '\n') {
			buf_append(out, "\\n", 2);
		} else {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			buf_append(out, e, 6);
		}
	}
	buf_append(out, s + run, n - run);
	buf_append_byte(out, '"');
}

void envelope_build_parts(struct buf *out, const char *group, size_t glen, const char *epoch,
			  size_t elen, int64_t offset, const struct laurel_value *text,
			  const struct laurel_value *bytes)
{
	buf_append_str(out, "{\"group\":");
	json_string(out, group, glen);
	buf_append_str(out, ",\"epoch\":");
	json_string(out, epoch, elen);
	buf_printf(out, ",\"offset\":%lld,", (long long)offset);
	if (text) {
		buf_append_str(out, "\"text\":");
		json_string(out, text->u.s.ptr, text->u.s.len);
	} else {
		char *b64 = xmalloc(4 * ((bytes->u.s.len + 2) / 3) + 1);
		util_base64_encode(bytes->u.s.ptr, bytes->u.s.len, b64);
		buf_append_str(out, "\"bytes\":\"");
		buf_append_str(out, b64);
		buf_append_byte(out, '"');
		free(b64);
	}
	buf_append_byte(out, '}');
}

bool envelope_parse(const struct laurel_value *history, struct envelope_key *k)
{
	if (!history || history->type != LAUREL_LIST || history->u.list.len != 3)
		return false;
	const struct laurel_value *g = &history->u.list.items[0], *e = &history->u.list.items[1],
				 *o = &history->u.list.items[2];
	if (g->type != LAUREL_TEXT || e->type != LAUREL_TEXT || o->type != LAUREL_INT)
		return false;
	*k = (struct envelope_key){g->u.s.ptr, e->u.s.ptr, g->u.s.len, e->u.s.len, o->u.i};
	return true;
}

bool envelope_build(struct buf *out, const struct laurel_value *history,
		    const struct laurel_value *text, const struct laurel_value *bytes)
{
	struct envelope_key k;
	if (!envelope_parse(history, &k) || !text == !bytes)
		return false;
	envelope_build_parts(out, k.group, k.glen, k.epoch, k.elen, k.offset, text, bytes);
	return true;
}

void envelope_status(struct buf *out, const char *group, const char *epoch, int64_t offset,
		     bool recovered)
{
	buf_append_str(out, "{\"group\":");
	json_string(out, group, strlen(group));
	buf_append_str(out, ",\"epoch\":");
	json_string(out, epoch, strlen(epoch));
	buf_printf(out, ",\"offset\":%lld,\"recovered\":%s}", (long long)offset,
		   recovered ? "true" : "false");
}
