#include "common/options.h"
#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HELP_WIDTH 80
#define HELP_COLUMN 26

static int failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Whether a[0..alen) and b[0..blen) are the same name, '-' and '_' taken as equal. */
static bool same_name(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++) {
		char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
		if (x != y)
			return false;
	}
	return true;
}

/* The length of an option's long name, without its synonyms. */
static int name_len(const struct option *o)
{
	return (int)strcspn(o->name, "|");
}

static const struct option *find_long(const struct option *opts, size_t n, const char *name,
				      size_t len)
{
	for (size_t i = 0; i < n; i++)
		for (const char *p = opts[i].name;; p++) {
			size_t plen = strcspn(p, "|");
			if (same_name(p, plen, name, len))
				return &opts[i];
			p += plen;
			if (!*p)
				break;
		}
	return NULL;
}

static const struct option *find_short(const struct option *opts, size_t n, char c)
{
	for (size_t i = 0; i < n; i++)
		if (opts[i].short_name && opts[i].short_name == c)
			return &opts[i];
	return NULL;
}

/* Whether the option must have a value (OPTION_VERBOSITY may have one). */
static bool takes_value(const struct option *o)
{
	return o->type != OPTION_FLAG && o->type != OPTION_VERBOSITY;
}

/* A whole number, as a -v may be followed by: anything else after it is an operand. */
static bool is_number(const char *s)
{
	s += *s == '-';
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* A -v without a number: one more than the level so far, which is the default (or 0 for a
 * default below 0) the first time. */
static void raise_level(const struct option *o, void *cfg, bool first)
{
	int *level = (int *)((char *)cfg + o->offset);
	if (first) {
		long base = o->def ? strtol(o->def, NULL, 10) : 0;
		*level = base < 0 ? 0 : (int)base;
	}
	if (*level < o->max)
		(*level)++;
}

static void list_push(struct option_list *l, const char *s, size_t len)
{
	l->v = xrealloc(l->v, (l->n + 2) * sizeof(*l->v));
	l->v[l->n++] = xstrndup(s, len);
	l->v[l->n] = NULL;
}

static void list_free(struct option_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Whether s starts with a URL scheme ("redis://", "unix://", ...). */
static bool starts_with_scheme(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	return n > 0 && strncmp(s + n, "://", 3) == 0;
}

static int set_value(const struct option *o, void *cfg, const char *val, const char *source,
		     char *err, size_t errlen)
{
	void *field = (char *)cfg + o->offset;
	switch (o->type) {
	case OPTION_FLAG:
		*(bool *)field = true;
		return 0;
	case OPTION_VERBOSITY:
	case OPTION_INT:
	case OPTION_MODE:
	case OPTION_SIZE: {
		char *end;
		errno = 0;
		long long v = strtoll(val, &end, o->type == OPTION_MODE ? 8 : 10);
		if (o->type == OPTION_SIZE && end != val && !errno) {
			long long mult = 1;
			if (*end == 'k' || *end == 'K')
				mult = 1024;
			else if (*end == 'M')
				mult = 1024 * 1024;
			else if (*end == 'G')
				mult = 1024LL * 1024 * 1024;
			if (mult > 1) {
				end++;
				if (v > INT64_MAX / mult || v < INT64_MIN / mult)
					errno = ERANGE; /* never multiplied: that would overflow */
				else
					v *= mult;
			}
		}
		if (errno || end == val || *end || v < o->min || v > o->max)
			return failf(err, errlen, "%s must be %s from %lld to %lld, not \"%.60s\"",
				     source,
				     o->type == OPTION_MODE ? "an octal mode" : "a whole number",
				     o->min, o->max, val);
		if (o->type == OPTION_SIZE)
			*(size_t *)field = (size_t)v;
		else
			*(int *)field = (int)v;
		return 0;
	}
	case OPTION_STRING:
		if (strlen(val) < (size_t)o->min)
			return failf(err, errlen, "%s must not be empty", source);
		free(*(char **)field);
		*(char **)field = xstrdup(val);
		return 0;
	case OPTION_LIST:
		list_push(field, val, strlen(val));
		return 0;
	case OPTION_URLS: {
		struct option_list *l = field;
		size_t before = l->n;
		for (const char *p = val; *p;) {
			p += strspn(p, " ,\t\n");
			size_t len = strcspn(p, " ,\t\n");
			/* A comma not followed by a scheme is inside a URL: a Sentinel shard's list
			 * of sentinels (redis+sentinel://h1:26379,h2:26379/name). */
			while (p[len] == ',' && p[len + 1 + strspn(p + len + 1, " \t\n")] &&
			       !starts_with_scheme(p + len + 1 + strspn(p + len + 1, " \t\n")))
				len += 1 + strcspn(p + len + 1, " ,\t\n");
			if (len)
				list_push(l, p, len);
			p += len;
		}
		if (l->n == before)
			return failf(err, errlen, "%s holds no URL", source);
		return 0;
	}
	}
	return failf(err, errlen, "%s: unknown option type", source);
}

int options_parse(const struct option *opts, size_t nopts, void *cfg, int argc, char **argv,
		  char **pos, int *npos, bool *given, char *err, size_t errlen)
{
	bool local_given[128] = {false};
	bool only_operands = false;
	char source[96];
	if (!given) {
		if (nopts > ARRAY_SIZE(local_given))
			return failf(err, errlen, "too many options");
		given = local_given;
	}
	memset(given, 0, nopts * sizeof(*given));
	*npos = 0;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (only_operands || a[0] != '-' || a[1] == '\0') {
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_operands = true;
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const struct option *o = find_long(opts, nopts, name, len);
			if (!o)
				return failf(err, errlen, "unknown option \"%.60s\" (see --help)", a);
			snprintf(source, sizeof(source), "--%.*s", name_len(o), o->name);
			const char *val = eq ? eq + 1 : NULL;
			if (o->type == OPTION_VERBOSITY && !val && i + 1 < argc &&
			    is_number(argv[i + 1]))
				val = argv[++i];
			if (o->type == OPTION_VERBOSITY && !val) {
				raise_level(o, cfg, !given[o - opts]);
			} else if (takes_value(o) && !val) {
				if (i + 1 >= argc)
					return failf(err, errlen, "option --%.*s needs a value (%s)",
						     name_len(o), o->name, o->metavar);
				val = argv[++i];
			} else if (o->type == OPTION_FLAG && val) {
				return failf(err, errlen, "option --%.*s takes no value", name_len(o),
					     o->name);
			}
			if ((val || o->type == OPTION_FLAG) &&
			    set_value(o, cfg, val, source, err, errlen) < 0)
				return -1;
			given[o - opts] = true;
			continue;
		}
		for (const char *c = a + 1; *c; c++) {
			const struct option *o = find_short(opts, nopts, *c);
			if (!o)
				return failf(err, errlen, "unknown option -%c (see --help)", *c);
			snprintf(source, sizeof(source), "-%c", *c);
			const char *val = NULL;
			if (o->type == OPTION_VERBOSITY) {
				/* A number attached or next, else none (-vv, -v COMMAND). */
				if (c[1] && (strchr("0123456789", c[1]) ||
					     (c[1] == '-' && c[2] && strchr("0123456789", c[2]))))
					val = c + 1;
				else if (!c[1] && i + 1 < argc && is_number(argv[i + 1]))
					val = argv[++i];
				if (!val)
					raise_level(o, cfg, !given[o - opts]);
			} else if (takes_value(o)) {
				if (c[1])
					val = c + 1;
				else if (i + 1 < argc)
					val = argv[++i];
				else
					return failf(err, errlen, "option -%c needs a value (%s)", *c,
						     o->metavar);
			}
			if ((val || o->type == OPTION_FLAG) &&
			    set_value(o, cfg, val, source, err, errlen) < 0)
				return -1;
			given[o - opts] = true;
			if (val)
				break;
		}
	}
	for (size_t i = 0; i < nopts; i++) {
		const struct option *o = &opts[i];
		const char *env = o->env ? getenv(o->env) : NULL;
		if (given[i])
			continue;
		if (env && env[strspn(env, " ,\t\n")]) {
			snprintf(source, sizeof(source), "the environment variable %s", o->env);
			if (set_value(o, cfg, env, source, err, errlen) < 0)
				return -1;
			given[i] = true;
		} else if (o->def) {
			snprintf(source, sizeof(source), "the default of --%.*s", name_len(o),
				 o->name);
			if (set_value(o, cfg, o->def, source, err, errlen) < 0)
				return -1;
		}
	}
	/* The values are copies: passwords need not stay visible in ps (operands are the
	 * program's own, untouched). */
	for (int i = 1; i < argc; i++) {
		bool operand = false;
		for (int j = 0; j < *npos && !operand; j++)
			operand = pos[j] == argv[i];
		if (!operand && (strstr(argv[i], "://") || strstr(argv[i], "password=")))
			util_scrub_secrets(argv[i]);
	}
	return 0;
}

void options_free(const struct option *opts, size_t nopts, void *cfg)
{
	for (size_t i = 0; i < nopts; i++) {
		void *field = (char *)cfg + opts[i].offset;
		if (opts[i].type == OPTION_STRING) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (opts[i].type == OPTION_LIST || opts[i].type == OPTION_URLS) {
			list_free(field);
		}
	}
}

void options_wrap(FILE *f, const char *text, int indent, int col)
{
	const char *p = text;
	while (*p) {
		size_t word = strcspn(p, " ");
		if (col > indent && col + 1 + (int)word > HELP_WIDTH) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (col > indent) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, word, f);
		col += (int)word;
		p += word;
		p += strspn(p, " ");
	}
	fputc('\n', f);
}

void options_item(FILE *f, const char *left, const char *text)
{
	int col = fprintf(f, "  %s", left);
	if (col >= HELP_COLUMN - 1) {
		fprintf(f, "\n%*s", HELP_COLUMN, "");
		col = HELP_COLUMN;
	} else {
		col += fprintf(f, "%*s", HELP_COLUMN - col, "");
	}
	/* col == HELP_COLUMN: the first word must not get a separating space. */
	options_wrap(f, text, HELP_COLUMN, col);
}

void options_print(FILE *f, const struct option *opts, size_t nopts)
{
	for (size_t i = 0; i < nopts; i++) {
		const struct option *o = &opts[i];
		char left[80], text[1024];
		size_t n;
		if (o->short_name)
			n = (size_t)snprintf(left, sizeof(left), "-%c, ", o->short_name);
		else
			n = (size_t)snprintf(left, sizeof(left), "    ");
		/* Synonyms too: "--verbosity, --verbose". */
		for (const char *p = o->name;; p++) {
			int len = (int)strcspn(p, "|");
			n += (size_t)snprintf(left + n, sizeof(left) - n, "%s--%.*s",
					      p == o->name ? "" : ", ", len, p);
			p += len;
			if (!*p || n >= sizeof(left))
				break;
		}
		if (o->metavar && o->type == OPTION_VERBOSITY)
			snprintf(left + n, sizeof(left) - n, " [%s]", o->metavar);
		else if (o->metavar)
			snprintf(left + n, sizeof(left) - n, " %s", o->metavar);
		n = (size_t)snprintf(text, sizeof(text), "%s", o->help);
		if (o->env)
			n += (size_t)snprintf(text + n, sizeof(text) - n, " Environment: %s.",
					      o->env);
		if (o->def && o->type == OPTION_STRING)
			snprintf(text + n, sizeof(text) - n, " Default: \"%s\".", o->def);
		else if (o->def)
			snprintf(text + n, sizeof(text) - n, " Default: %s.", o->def);
		options_item(f, left, text);
	}
}

int options_complain(const char *program, int code, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "%s: %s\n", program, line);
	return code;
}
