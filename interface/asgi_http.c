/* HTTP to ASGI message pieces (see asgi_http.h). */
#include "interface/asgi_http.h"
#include "interface/websocket.h"

#include <string.h>

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes the path into out; false if it is not valid UTF-8 afterwards. */
bool asgi_http_decode_path(const char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
			buf_append_byte(out,
					(unsigned char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2])));
			i += 2;
		} else {
			buf_append_byte(out, (unsigned char)p[i]);
		}
	}
	return ws_valid_utf8((const uint8_t *)out->data, out->len);
}

const struct http1_header *asgi_http_header(const struct http1_request *h, const char *name)
{
	for (size_t i = 0; i < h->nheaders; i++)
		if (strcmp(h->headers[i].name, name) == 0)
			return &h->headers[i];
	return NULL;
}

void asgi_http_put_addr(struct laurel_msg *m, const char *key, const char *host, int port,
			bool have)
{
	struct laurel_value *v = laurel_map_put(m, laurel_msg_root(m), key);
	if (!have)
		return; /* nil on a unix socket */
	laurel_value_set_list(m, v, 2);
	laurel_value_set_text(m, laurel_list_push(m, v), host, strlen(host));
	laurel_value_set_int(laurel_list_push(m, v), port);
}

void asgi_http_put_headers(struct laurel_msg *m, const struct http1_request *h)
{
	struct laurel_value *hv = laurel_map_put(m, laurel_msg_root(m), "headers");
	laurel_value_set_list(m, hv, h->nheaders);
	for (size_t i = 0; i < h->nheaders; i++) {
		const struct http1_header *hd = &h->headers[i];
		if (memchr(hd->name, '_', hd->namelen))
			continue; /* Daphne drops them: they could spoof CGI-style variables */
		struct laurel_value *pair = laurel_list_push(m, hv);
		laurel_value_set_list(m, pair, 2);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->name, hd->namelen);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), hd->value, hd->valuelen);
	}
}
