"""``/ui/`` (the dashboard) and ``/docs`` (the API viewer): static files, public like
``/healthz`` because they hold no data (the browser asks the authenticated ``/v1`` API for
that, with the token the user signs in with).

Each answer carries a Content-Security-Policy that allows scripts, styles and requests from
the gateway itself only (no inline script, no other site, no framing), and revalidates with
its ETag (``Cache-Control: no-cache``): a gateway upgrade shows at the next load.
"""

from aiohttp import hdrs, web

from gateway.errors import not_found
from gateway.ui.assets import Asset, load_assets

ASSETS = web.AppKey("ui_assets", dict[str, Asset])

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
INDEX = "index.html"
DOCS_PAGE = "docs/index.html"


def setup(app: web.Application) -> None:
    """Read the static files (once, at the app's construction)."""
    app[ASSETS] = load_assets()


async def ui_root(request: web.Request) -> web.StreamResponse:
    """``/ui`` → ``/ui/`` (relative URLs in the page resolve under it)."""
    raise web.HTTPPermanentRedirect("/ui/")


async def ui_file(request: web.Request) -> web.StreamResponse:
    """``/ui/`` is the dashboard's page; ``/ui/<path>`` one of its files, else 404."""
    return _serve(request, request.match_info.get("path") or INDEX)


async def docs(request: web.Request) -> web.StreamResponse:
    """``/docs``: the vendored Swagger UI showing ``/openapi.json``."""
    return _serve(request, DOCS_PAGE)


def _serve(request: web.Request, path: str) -> web.StreamResponse:
    asset = request.app[ASSETS].get(path)
    if asset is None:
        raise not_found(f"no file {path[:100]!r} in the dashboard")
    headers = {**_HEADERS, hdrs.ETAG: asset.etag, hdrs.VARY: "Accept-Encoding"}
    if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
        body = asset.gzipped
        headers[hdrs.CONTENT_ENCODING] = "gzip"
    return web.Response(body=body, headers=headers, content_type=asset.content_type, charset=_charset(asset))


def _charset(asset: Asset) -> str | None:
    return "utf-8" if asset.content_type.startswith("text/") or asset.content_type == "application/json" else None
