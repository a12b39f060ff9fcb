/* The HTTP response start message. */
#include "common/response.h"

#include <string.h>

struct laurel_msg *response_start(int status, const struct laurel_header *headers, size_t nheaders,
				  const void *content, size_t len, bool more)
{
	struct laurel_msg *m = laurel_msg_new();
	struct laurel_value *root = laurel_msg_root(m);
	laurel_msg_set_int(m, "status", status);
	struct laurel_value *list = laurel_map_put(m, root, "headers");
	laurel_value_set_list(m, list, nheaders);
	for (size_t i = 0; i < nheaders; i++) {
		struct laurel_value *pair = laurel_list_push(m, list);
		laurel_value_set_list(m, pair, 2);
		laurel_value_set_bytes(m, laurel_list_push(m, pair), headers[i].name,
				       strlen(headers[i].name));
		laurel_value_set_bytes(m, laurel_list_push(m, pair), headers[i].value,
				       strlen(headers[i].value));
	}
	laurel_msg_set_bytes(m, "content", content ? content : "", len);
	laurel_msg_set_bool(m, "more_content", more);
	return m;
}
