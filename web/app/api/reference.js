// The API reference page (/api): Swagger UI, vendored under /vendor/swagger-ui/, renders one of
// the three public services' OpenAPI documents, which the edge proxies like any other route.
// Read-only: no "try it out", so the page never sends a request with anyone's token. The
// isolated tenant's document is not here: nothing in the edge reaches the tenant (INV-9).
'use strict';
(function () {
  var DOCS = {
    control: '/control/v1/openapi.json',
    membership: '/membership/v1/openapi.json',
    bulk: '/bulk/v1/openapi.json'
  };
  var asked = new URLSearchParams(window.location.search).get('doc');
  var doc = Object.prototype.hasOwnProperty.call(DOCS, asked) ? asked : 'control';
  var links = document.querySelectorAll('#docs a');
  for (var i = 0; i < links.length; i++) {
    if (links[i].getAttribute('data-doc') === doc) links[i].setAttribute('aria-current', 'page');
  }
  document.title = 'Hush ' + doc + '-api: API reference';
  window.SwaggerUIBundle({
    url: DOCS[doc],
    dom_id: '#swagger-ui',
    deepLinking: true,
    supportedSubmitMethods: [],
    validatorUrl: null,
    tryItOutEnabled: false,
    defaultModelsExpandDepth: 0,
    docExpansion: 'list'
  });
})();
