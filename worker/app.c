/* Loading an application. Its consumers call the laurel_* functions of the worker program, which
 * is linked with every laurel library whole and exports its symbols (meson: export_dynamic), so
 * the application needs no library of its own at run time. */
#include "worker/app.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"

struct app {
	void *handle;
	const struct laurel_app *desc;
};

int app_load(struct app **out, const char *path, char *err, size_t errlen)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "cannot load the application: %s", dlerror());
		return -EINVAL;
	}
	const struct laurel_app *d = dlsym(h, LAUREL_APP_SYMBOL);
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
	    d->ws_size != sizeof(struct laurel_ws_consumer)) {
		snprintf(err, errlen,
			 "%s was built with incompatible laurel headers (struct sizes %u/%u, "
			 "expected %zu/%zu): rebuild the application against this laurel's headers",
			 path, (unsigned)d->route_size, (unsigned)d->ws_size,
			 sizeof(struct laurel_route), sizeof(struct laurel_ws_consumer));
		goto fail;
	}
	if (!d->routes) {
		snprintf(err, errlen, "%s: its laurel_app has no routes", path);
		goto fail;
	}
	struct app *a = xcalloc(1, sizeof(*a));
	a->handle = h;
	a->desc = d;
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
