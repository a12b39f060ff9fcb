/* Command-line options from one declarative table per program: parsing (long and short forms,
 * "--name=value", bundled short flags, "--" ending options), the environment, defaults, range
 * checks with clear messages, and --help text are all generated from the table. Long names match
 * with '-' and '_' taken as equal, so Daphne's --websocket_timeout and --websocket-timeout both
 * work. */
#ifndef LAUREL_COMMON_OPTIONS_H
#define LAUREL_COMMON_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum option_type {
	OPTION_FLAG,	/* bool, set when given */
	OPTION_VERBOSITY, /* int, how much to log (log_level_for, common/log.h): "-v N", "-vN",
			   * "--name N" and "--name=N" set it to N in [min, max]; a -v or --name
			   * not followed by a number raises it by one from the default (from 0
			   * when the default is below 0: quiet), up to max, so -vv by two */
	OPTION_INT,	/* int in [min, max] */
	OPTION_SIZE,	/* size_t in [min, max]; accepts k, M, G suffixes (1024-based) */
	OPTION_MODE,	/* int, octal, in [min, max] */
	OPTION_STRING,	/* char *, owned; min is the least length */
	OPTION_LIST,	/* struct option_list; repeatable */
	OPTION_URLS,	/* struct option_list; repeatable; one value may hold several URLs separated
			 * by spaces or commas (for an environment variable); a comma not followed
			 * by a scheme:// stays in its URL (redis+sentinel://h1,h2/name) */
};

struct option_list {
	char **v;
	size_t n;
};

struct option {
	const char *name;    /* long name, then any synonyms after '|' ("verbosity|verbose") */
	char short_name;
	enum option_type type;
	size_t offset;	     /* of the field in the program's config struct */
	long long min, max;
	const char *def;     /* parsed like a command-line value when neither flag nor env is set */
	const char *env;     /* environment variable read when the flag is not given */
	const char *metavar; /* NULL for flags and counts */
	const char *help;
};

/* The help of every program's -v, --verbosity (OPTION_VERBOSITY), to which a program may add
 * what a level shows in it. */
#define OPTION_VERBOSITY_HELP                                                                      \
	"How much to log on stderr: 0 warnings and errors, 1 also information, 2 also debug. A "  \
	"-v not followed by a number is one more than the default, -vv two more."

/* Parses argv[1..argc) into cfg: options anywhere until "--", the rest into pos[0..*npos) (pos
 * must hold argc entries). Then fills every option not given from its environment variable, else
 * its default. Returns 0, or -1 with a one-line message in err. given (may be NULL, else one bool
 * per option) tells which options were set on the command line or environment. Once the values
 * are copied, the passwords of URLs in option arguments (redis://:PASSWORD@host, password=...)
 * are overwritten with '*' in argv itself, so ps and /proc/PID/cmdline do not show them. */
int options_parse(const struct option *opts, size_t nopts, void *cfg, int argc, char **argv,
		  char **pos, int *npos, bool *given, char *err, size_t errlen);
/* Frees the strings and lists the table's options hold in cfg. */
void options_free(const struct option *opts, size_t nopts, void *cfg);
/* Tells the operator what went wrong in one stderr line "program: message" (line breaks in the
 * message become spaces) and returns code, for a program's exit status. */
int options_complain(const char *program, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints the options as help text, one item each ("  -p, --port PORT   help. Default: 8000."),
 * wrapped to 80 columns. */
void options_print(FILE *f, const struct option *opts, size_t nopts);
/* Prints text word-wrapped to 80 columns, every line but the first indented by indent columns;
 * the first starts at column col. */
void options_wrap(FILE *f, const char *text, int indent, int col);
/* Prints "  left" padded to the help column, then text wrapped beside it. */
void options_item(FILE *f, const char *left, const char *text);

#endif
