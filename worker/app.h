/* Applications as shared objects: laurel-worker --app PATH (include/laurel/routing.h), their
 * options and their init/fini hooks. */
#ifndef LAUREL_WORKER_APP_H
#define LAUREL_WORKER_APP_H

#include <stdio.h>
#include <stddef.h>

#include "laurel/routing.h"

struct app;

/* The environment variable of --app-option: NAME=VALUE pairs separated by white space. */
#define APP_OPTIONS_ENV "LAUREL_APP_OPTIONS"

/* Loads the shared object at path (dlopen) and checks the struct laurel_app it exports against
 * this build's API version and struct sizes, and its option declarations. Returns 0, or -EINVAL
 * with a sentence in err: the file cannot be loaded, exports no "laurel_app", was built against
 * another API version, or declares a bad option. */
int app_load(struct app **out, const char *path, char *err, size_t errlen);
/* Unloads it (dlclose): every route and consumer of it becomes invalid. NULL is a no-op. */
void app_free(struct app *a);

/* Its routes and name, borrowed from the loaded object. */
const struct laurel_route *app_routes(const struct app *a);
const char *app_name(const struct app *a);

/* Sets the options from "NAME=VALUE" items (copied; a later one wins). Returns 0, or -EINVAL with
 * a sentence in err: an item without '=', or a name the application does not declare (the
 * sentence lists the ones it does). */
int app_set_options(struct app *a, const char *const *items, size_t n, char *err, size_t errlen);
/* Splits an environment value of NAME=VALUE pairs separated by white space, then as
 * app_set_options. */
int app_set_options_env(struct app *a, const char *value, char *err, size_t errlen);
/* app_load, then the options: items (app_set_options) when n > 0, else the environment variable
 * LAUREL_APP_OPTIONS (app_set_options_env) if set. Returns as those. */
int app_open(struct app **out, const char *path, const char *const *items, size_t n, char *err,
	     size_t errlen);
/* Prints the application's options as --help items (nothing if it has none). */
void app_print_options(const struct app *a, FILE *f);

/* Runs the init hook for worker number `worker` (0 without one): *data is what it made (NULL
 * without a hook). Returns 0, or the hook's negative errno with "init failed: reason" in err. */
int app_start(struct app *a, int worker, void **data, char *err, size_t errlen);
/* Runs the fini hook with what app_start made. */
void app_stop(struct app *a, void *data);

#endif
