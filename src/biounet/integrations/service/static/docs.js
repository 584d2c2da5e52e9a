// The API docs of `biounet serve`: Swagger UI (served by this server, no CDN) on the OpenAPI description.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // the default validator is a web service elsewhere: never contacted
});
