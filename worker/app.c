/* Loading an application. Its consumers call the laurel_* functions of the worker program, which
 * is linked with every laurel library whole and exports its symbols (meson: export_dynamic), so
 * the application needs no library of its own at run time. */
#include "worker/app.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/options.h"
#include "common/util.h"

struct app {
	void *handle;
	const struct laurel_app *desc;
	size_t nopts;
	char **values; /* per declared option: given (owned) or NULL */
};

struct laurel_app_env {
	const struct app *app;
	int worker;
	char error[512];
};

static bool valid_option_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	return true;
}

/* Checks the declarations: names well formed and not repeated. */
static int check_options(const struct laurel_app *d, const char *path, size_t *n, char *err,
			 size_t errlen)
{
	*n = 0;
	for (const struct laurel_app_option *o = d->options; o && o->name; o++, (*n)++) {
		if (!valid_option_name(o->name)) {
			snprintf(err, errlen,
				 "%s declares an option with a bad name \"%.60s\" (letters, digits, "
				 "'-', '_' and '.' only)",
				 path, o->name);
			return -EINVAL;
		}
		for (const struct laurel_app_option *p = d->options; p < o; p++)
			if (strcmp(p->name, o->name) == 0) {
				snprintf(err, errlen, "%s declares the option %s twice", path, o->name);
				return -EINVAL;
			}
	}
	return 0;
}

int app_load(struct app **out, const char *path, char *err, size_t errlen)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "cannot load the application: %s", dlerror());
		return -EINVAL;
	}
	const struct laurel_app *d = dlsym(h, LAUREL_APP_SYMBOL);
	size_t nopts = 0;
	if (!d) {
		snprintf(err, errlen,
			 "%s is not a laurel application: it exports no \"%s\" (define it with "
			 "LAUREL_APP from <laurel/routing.h>)",
			 path, LAUREL_APP_SYMBOL);
		goto fail;
	}
	if (d->api_version != LAUREL_API_VERSION) {
		snprintf(err, errlen,
			 "%s was built against laurel API version %u, but this laurel-worker "
			 "speaks version %u: rebuild the application against this laurel's headers",
			 path, (unsigned)d->api_version, (unsigned)LAUREL_API_VERSION);
		goto fail;
	}
	if (d->route_size != sizeof(struct laurel_route) ||
	    d->ws_size != sizeof(struct laurel_ws_consumer) ||
	    d->app_size != sizeof(struct laurel_app)) {
		snprintf(err, errlen,
			 "%s was built with incompatible laurel headers (struct sizes %u/%u/%u, "
			 "expected %zu/%zu/%zu): rebuild the application against this laurel's "
			 "headers",
			 path, (unsigned)d->route_size, (unsigned)d->ws_size, (unsigned)d->app_size,
			 sizeof(struct laurel_route), sizeof(struct laurel_ws_consumer),
			 sizeof(struct laurel_app));
		goto fail;
	}
	if (!d->routes) {
		snprintf(err, errlen, "%s: its laurel_app has no routes", path);
		goto fail;
	}
	if (check_options(d, path, &nopts, err, errlen) < 0)
		goto fail;
	struct app *a = xcalloc(1, sizeof(*a));
	a->handle = h;
	a->desc = d;
	a->nopts = nopts;
	a->values = xcalloc(nopts + 1, sizeof(*a->values));
	*out = a;
	return 0;
fail:
	dlclose(h);
	return -EINVAL;
}

void app_free(struct app *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nopts; i++)
		free(a->values[i]);
	free(a->values);
	dlclose(a->handle);
	free(a);
}

const struct laurel_route *app_routes(const struct app *a)
{
	return a->desc->routes;
}

const char *app_name(const struct app *a)
{
	return a->desc->name ? a->desc->name : "unnamed";
}

static int set_one(struct app *a, const char *item, size_t len, char *err, size_t errlen)
{
	const char *eq = memchr(item, '=', len);
	if (!eq || eq == item) {
		snprintf(err, errlen, "--app-option takes NAME=VALUE, not \"%.*s\"",
			 (int)(len > 80 ? 80 : len), item);
		return -EINVAL;
	}
	size_t nlen = (size_t)(eq - item);
	for (size_t i = 0; i < a->nopts; i++) {
		const char *name = a->desc->options[i].name;
		if (strlen(name) == nlen && memcmp(name, item, nlen) == 0) {
			free(a->values[i]);
			a->values[i] = xstrndup(eq + 1, len - nlen - 1);
			return 0;
		}
	}
	int n = snprintf(err, errlen, "the application %s has no option \"%.*s\"", app_name(a),
			 (int)(nlen > 60 ? 60 : nlen), item);
	for (size_t i = 0; i < a->nopts && n > 0 && (size_t)n < errlen; i++)
		n += snprintf(err + n, errlen - (size_t)n, "%s%s", i ? ", " : " (it has: ",
			      a->desc->options[i].name);
	if (n > 0 && (size_t)n < errlen)
		snprintf(err + n, errlen - (size_t)n, "%s", a->nopts ? ")" : "; it has none)");
	return -EINVAL;
}

int app_set_options(struct app *a, const char *const *items, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		if (set_one(a, items[i], strlen(items[i]), err, errlen) < 0)
			return -EINVAL;
	return 0;
}

int app_set_options_env(struct app *a, const char *value, char *err, size_t errlen)
{
	for (const char *p = value; *p;) {
		p += strspn(p, " \t\n");
		size_t len = strcspn(p, " \t\n");
		if (len && set_one(a, p, len, err, errlen) < 0)
			return -EINVAL;
		p += len;
	}
	return 0;
}

int app_open(struct app **out, const char *path, const char *const *items, size_t n, char *err,
	     size_t errlen)
{
	struct app *a;
	int rc = app_load(&a, path, err, errlen);
	if (rc < 0)
		return rc;
	const char *env = getenv(APP_OPTIONS_ENV);
	if (n)
		rc = app_set_options(a, items, n, err, errlen);
	else if (env)
		rc = app_set_options_env(a, env, err, errlen);
	if (rc < 0) {
		if (!n) {
			/* Say where the bad name came from. */
			size_t len = strlen(err);
			snprintf(err + len, errlen - len, " (from %s)", APP_OPTIONS_ENV);
		}
		app_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void app_print_options(const struct app *a, FILE *f)
{
	if (!a->nopts)
		return;
	fprintf(f, "\nOptions of the application %s (--app-option NAME=VALUE):\n", app_name(a));
	for (size_t i = 0; i < a->nopts; i++) {
		const struct laurel_app_option *o = &a->desc->options[i];
		char text[1024];
		size_t n = (size_t)snprintf(text, sizeof(text), "%s", o->help ? o->help : "");
		if (o->def && n < sizeof(text))
			snprintf(text + n, sizeof(text) - n, " Default: \"%s\".", o->def);
		options_item(f, o->name, text);
	}
}

int app_start(struct app *a, int worker, void **data, char *err, size_t errlen)
{
	*data = NULL;
	if (!a->desc->init)
		return 0;
	struct laurel_app_env env = {.app = a, .worker = worker};
	int rc = a->desc->init(&env, data);
	if (rc == 0)
		return 0;
	if (rc > 0)
		rc = -EINVAL;
	snprintf(err, errlen, "the application %s: init failed: %s", app_name(a),
		 env.error[0] ? env.error : strerror(-rc));
	*data = NULL;
	return rc;
}

void app_stop(struct app *a, void *data)
{
	if (a && a->desc->fini)
		a->desc->fini(data);
}

/* --- For the application's init (include/laurel/routing.h) ---------------------------------- */

const char *laurel_app_option(const struct laurel_app_env *env, const char *name)
{
	const struct app *a = env->app;
	for (size_t i = 0; name && i < a->nopts; i++)
		if (strcmp(a->desc->options[i].name, name) == 0)
			return a->values[i] ? a->values[i] : a->desc->options[i].def;
	return NULL;
}

int laurel_app_worker(const struct laurel_app_env *env)
{
	return env->worker;
}

int laurel_app_error(struct laurel_app_env *env, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(env->error, sizeof(env->error), fmt, ap);
	va_end(ap);
	return err;
}
