/* Static files for development (laurel runserver --static PREFIX=DIR): GET and HEAD of files
 * under DIR for request paths under PREFIX, with content types, Last-Modified and 304 on
 * If-Modified-Since. Paths that would leave DIR (.., symlinks out of it) are 404. In production
 * nginx serves static files (deploy/nginx). */
#ifndef LAUREL_INTERFACE_STATIC_H
#define LAUREL_INTERFACE_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct static_mount {
	char *prefix; /* URL path prefix, starting and ending with '/' */
	char *dir;    /* absolute, resolved */
};

/* Parses "PREFIX=DIR". Returns 0, or -1 with a sentence in err. */
int static_mount_parse(struct static_mount *m, const char *spec, char *err, size_t errlen);
void static_mount_fini(struct static_mount *m);

/* If path (decoded, pathlen bytes, NUL-terminated) is under one of the mounts, writes a whole
 * response (head and, unless HEAD, body) into out and returns true, with *status and *bytes
 * (body bytes) set. Returns false when the path is under no mount. A path holding a NUL is 404. */
bool static_serve(const struct static_mount *mounts, size_t n, const char *method,
		  const char *path, size_t pathlen, const char *if_modified_since,
		  const char *date, bool keep_alive, struct buf *out, int *status, uint64_t *bytes);

#endif
