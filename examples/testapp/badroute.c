/* An application with a bad pattern: laurel-worker must refuse it at load, naming the route. */
#include "laurel/routing.h"

static int room(struct laurel_ctx *ctx)
{
	return 0;
}

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("http.request", room, LAUREL_FILTER("path", "^/room/(?P<name>[a-z+)/$")),
	LAUREL_ROUTES_END,
};

LAUREL_APP("badroute", routes);
