/* Helpers the example applications share. */
#include "example.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int example_reply_http_json(struct laurel_ctx *ctx, int status, const struct laurel_value *v,
			    const struct laurel_header *extra, size_t nextra)
{
	struct laurel_header h[8] = {{"Content-Type", "application/json"}};
	size_t nh = 1, len;
	char *s;
	for (size_t i = 0; i < nextra && nh < sizeof(h) / sizeof(h[0]); i++)
		h[nh++] = extra[i];
	if (laurel_json_dump(v, &s, &len))
		return laurel_ctx_error(ctx, -EINVAL, "no JSON form for the response");
	s[len] = '\n'; /* the NUL: a trailing newline is friendlier to curl users */
	int rc = laurel_reply_http(ctx, status, h, nh, s, len + 1, false);
	free(s);
	return rc;
}

int example_reply_http_error(struct laurel_ctx *ctx, int status, const char *reason)
{
	struct laurel_builder *b = laurel_ctx_builder(ctx);
	laurel_build_map(b, NULL);
	laurel_build_text(b, "error", reason);
	laurel_build_end(b);
	return example_reply_http_json(ctx, status, laurel_build_done(b), NULL, 0);
}

const char *example_text(const struct laurel_value *v, size_t *len)
{
	if (!v || v->type != LAUREL_TEXT || memchr(v->u.s.ptr, '\0', v->u.s.len))
		return NULL;
	if (len)
		*len = v->u.s.len;
	return v->u.s.ptr;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *example_query_param(const struct laurel_msg *m, const char *name)
{
	size_t len, nlen = strlen(name);
	const char *qs = laurel_msg_get_bytes(m, "query_string", &len);
	if (!qs)
		return NULL;
	const char *end = qs + len;
	for (const char *p = qs; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
			const char *v = p + nlen + 1;
			char *out = malloc((size_t)(stop - v) + 1), *o = out;
			if (!out)
				return NULL;
			for (; v < stop; v++) {
				int c = (unsigned char)*v;
				if (c == '+') {
					c = ' ';
				} else if (c == '%') {
					int hi = v + 2 < stop ? hexval(v[1]) : -1;
					int lo = hi >= 0 ? hexval(v[2]) : -1;
					if (lo < 0) {
						free(out);
						return NULL;
					}
					c = hi * 16 + lo;
					v += 2;
				}
				if (c == 0) {
					free(out);
					return NULL;
				}
				*o++ = (char)c;
			}
			*o = '\0';
			return out;
		}
		p = stop + 1;
	}
	return NULL;
}

bool example_valid_name(const char *s, size_t max)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return n >= 1 && n <= max;
}
