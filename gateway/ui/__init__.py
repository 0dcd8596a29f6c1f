"""The dashboard (``/ui/``) and the API viewer (``/docs``): static files only, served by the
gateway from ``static/`` (plain JavaScript modules, vendored libraries: no CDN, no build step).
Every datum they show comes from the authenticated ``/v1`` API, called by the browser with
the token the user signs in with."""
