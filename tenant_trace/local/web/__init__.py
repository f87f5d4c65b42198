"""The local web view, ``tenant-trace serve``: read-only pages (and their JSON) over the store,
for the admin token or a signed token scoped to one tenant (`access`). Starlette, uvicorn and
Jinja2 are the ``ui`` extra; only `app` imports them."""
