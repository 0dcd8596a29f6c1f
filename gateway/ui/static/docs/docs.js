// /docs: Swagger UI (vendored) rendering this gateway's /openapi.json. "Authorize" takes a
// token for "Try it out"; it stays in this page (not stored, never in a URL).
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
