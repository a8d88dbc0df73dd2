// The OpenAPI 3 description of root's admin API: docs/openapi.json, embedded at build time and
// served at GET /v1/openapi.json (a test checks it names exactly the routes root registers).
#ifndef X1368_ROOT_OPENAPI_H_
#define X1368_ROOT_OPENAPI_H_

namespace x1368::root {

const char* OpenApiDocument();

}  // namespace x1368::root

#endif  // X1368_ROOT_OPENAPI_H_
