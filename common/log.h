/* The one logging family. Lines go to stderr (supervisord owns the files). The level is checked
 * before any argument is evaluated. Every line about a connection should name it. */
#ifndef LAUREL_COMMON_LOG_H
#define LAUREL_COMMON_LOG_H

#include <errno.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level;

/* The log_level of a program's verbosity (its -v, --verbosity; common/options.h), the same in
 * every program: below 0 nothing (the tool's quiet default), 0 warnings and errors, 1 also
 * information, 2 and more also debug. */
int log_level_for(int verbosity);

/* Sets the program name printed at the start of each line (default "laurel"). */
void log_set_program(const char *name);
void log_write(int level, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_at(lvl, errnum, ...)                                                                   \
	do {                                                                                       \
		if ((lvl) <= log_level)                                                            \
			log_write((lvl), (errnum), __VA_ARGS__);                                   \
	} while (0)

#define log_error(...) log_at(LOG_ERROR, 0, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, 0, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, 0, __VA_ARGS__)
/* Lines that could come once per request or per connection (a client's protocol error, a request
 * refused): at most one per call site every LOG_LIMIT_MS, the next one saying how many were held
 * back. */
#define LOG_LIMIT_MS 10000
struct log_limit {
	long long next_ms;
	unsigned long held;
};
void log_write_limited(struct log_limit *lim, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define log_limited(lvl, ...)                                                                      \
	do {                                                                                       \
		static _Thread_local struct log_limit log_lim_;                                    \
		if ((lvl) <= log_level)                                                            \
			log_write_limited(&log_lim_, (lvl), __VA_ARGS__);                          \
	} while (0)

/* Appends ": strerror(errnum)". errnum may be positive or negative. */
#define log_errno(lvl, errnum, ...) log_at((lvl), (errnum), __VA_ARGS__)

#endif
