/* Files compiled into the program at build time by tool/embed.c (the dashboard's page). */
#ifndef LAUREL_TOOL_EMBEDDED_H
#define LAUREL_TOOL_EMBEDDED_H

#include <stddef.h>

struct embedded_file {
	const char *path; /* the URL path it is served at */
	const char *type; /* its Content-Type */
	const unsigned char *data;
	size_t len;
};
extern const struct embedded_file embedded_files[];
extern const unsigned embedded_files_count;

#endif
