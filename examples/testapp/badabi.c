/* An application that claims a future API version: laurel-worker must refuse it. */
#include "laurel/routing.h"

static int nothing(struct laurel_ctx *ctx)
{
	return 0;
}

static const struct laurel_route routes[] = {
	LAUREL_ROUTE("http.request", nothing),
	LAUREL_ROUTES_END,
};

__attribute__((visibility("default"))) const struct laurel_app laurel_app = {
	.api_version = 999, .route_size = sizeof(struct laurel_route),
	.ws_size = sizeof(struct laurel_ws_consumer), .app_size = sizeof(struct laurel_app),
	.name = "badabi", .routes = routes};
