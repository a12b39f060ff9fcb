#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

int log_level = LOG_WARN;
static const char *program = "laurel";

int log_level_for(int verbosity)
{
	if (verbosity < 0)
		return LOG_ERROR - 1;
	return verbosity >= 2 ? LOG_DEBUG : verbosity == 1 ? LOG_INFO : LOG_WARN;
}

void log_set_program(const char *name)
{
	program = name;
}

void log_write(int level, int errnum, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	char line[2048];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d %s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (int)(tv.tv_usec / 1000), program,
			 names[level < 0 ? 0 : level > 3 ? 3 : level]);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	if (errnum)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s",
			      strerror(errnum < 0 ? -errnum : errnum));
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line so lines from several threads do not interleave. */
	fwrite(line, 1, (size_t)n, stderr);
}

void log_write_limited(struct log_limit *lim, int level, const char *fmt, ...)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (now < lim->next_ms) {
		lim->held++;
		return;
	}
	char line[1536];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (lim->held)
		log_write(level, 0, "%s (and %lu more like it in the last %d s)", line, lim->held,
			  LOG_LIMIT_MS / 1000);
	else
		log_write(level, 0, "%s", line);
	lim->held = 0;
	lim->next_ms = now + LOG_LIMIT_MS;
}
