/* The consumer API's JSON text of a value (include/laurel/consumer.h), by the one converter
 * (common/json.h) under the consumers' policy. */
#include "common/json.h"

#include <errno.h>

#include "laurel/consumer.h"

int laurel_json_dump(const struct laurel_value *v, char **out, size_t *len)
{
	if (!v || !out)
		return -EINVAL;
	return json_dump(v, JSON_POLICY_STRICT, NULL, out, len);
}
