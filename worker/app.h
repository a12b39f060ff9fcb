/* Applications as shared objects: laurel-worker --app PATH (include/laurel/routing.h). */
#ifndef LAUREL_WORKER_APP_H
#define LAUREL_WORKER_APP_H

#include <stddef.h>

#include "laurel/routing.h"

struct app;

/* Loads the shared object at path (dlopen) and checks the struct laurel_app it exports against
 * this build's API version and struct sizes. Returns 0, or -EINVAL with a sentence in err: the
 * file cannot be loaded, exports no "laurel_app", or was built against another API version. */
int app_load(struct app **out, const char *path, char *err, size_t errlen);
/* Unloads it (dlclose): every route and consumer of it becomes invalid. NULL is a no-op. */
void app_free(struct app *a);

/* Its routes and name, borrowed from the loaded object. */
const struct laurel_route *app_routes(const struct app *a);
const char *app_name(const struct app *a);

#endif
