/* The JSON envelope of a group message with a history (docs/recovery.md): a message that
 * carries __laurel_history__ [group, epoch, offset] reaches the browser as one text frame
 *   {"group":"chat-lobby","epoch":"9f1c2a7e4b6d8035","offset":17,"text":"..."}
 * ("bytes":"<base64>" for a binary message), so that a client can track what it has seen. */
#ifndef LAUREL_INTERFACE_ENVELOPE_H
#define LAUREL_INTERFACE_ENVELOPE_H

#include <stdbool.h>
#include <stdint.h>

#include "laurel/message.h"
#include "common/buf.h"

/* The message key (common/layer.h: LAYER_HISTORY_KEY). */
#define ENVELOPE_KEY "__laurel_history__"

/* The parts of a __laurel_history__ value [group, epoch, offset]. */
struct envelope_key {
	const char *group, *epoch;
	size_t glen, elen;
	int64_t offset;
};
/* Returns false if history is not [text, text, int]. */
bool envelope_parse(const struct laurel_value *history, struct envelope_key *k);

/* Appends the envelope of text or bytes (one of them NULL) with history's fields to out.
 * Returns false, appending nothing, if history is not [text, text, int]. */
bool envelope_build(struct buf *out, const struct laurel_value *history,
		    const struct laurel_value *text, const struct laurel_value *bytes);
/* The same from its parts. */
void envelope_build_parts(struct buf *out, const char *group, size_t glen, const char *epoch,
			  size_t elen, int64_t offset, const struct laurel_value *text,
			  const struct laurel_value *bytes);
/* The frame that ends a recovery (docs/recovery.md):
 *   {"group":G,"epoch":E,"offset":T,"recovered":true|false} */
void envelope_status(struct buf *out, const char *group, const char *epoch, int64_t offset,
		     bool recovered);

#endif
