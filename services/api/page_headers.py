"""Security headers of the HTML pages the gateway serves (web UI, console page)."""

from __future__ import annotations

# Everything from this origin only: no CDN, no inline script. data: images for the UI's SVG icon
# and noVNC's cursor; 'self' in connect-src covers ws/wss to this origin (CSP 3).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Console tickets and tokens in fragments never leave the browser; nothing leaks by Referer.
    "Referrer-Policy": "no-referrer",
    # Pages are small and change with each release: always revalidate.
    "Cache-Control": "no-cache",
}
