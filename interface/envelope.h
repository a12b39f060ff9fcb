/* The JSON envelope of a group message with a history (docs/recovery.md): a message that
 * carries __laurel_history__ [group, epoch, offset] reaches the browser as one text frame
 *   {"group":"chat-lobby","epoch":"9f1c2a7e4b6d8035","offset":17,"text":"..."}
 * ("bytes":"<base64>" for a binary message), so that a client can track what it has seen. */
#ifndef LAUREL_INTERFACE_ENVELOPE_H
#define LAUREL_INTERFACE_ENVELOPE_H

#include <stdbool.h>

#include "laurel/message.h"
#include "common/buf.h"

/* The message key (common/layer.h: LAYER_HISTORY_KEY). */
#define ENVELOPE_KEY "__laurel_history__"

/* Appends the envelope of text or bytes (one of them NULL) with history's fields to out.
 * Returns false, appending nothing, if history is not [text, text, int]. */
bool envelope_build(struct buf *out, const struct laurel_value *history,
		    const struct laurel_value *text, const struct laurel_value *bytes);

#endif
