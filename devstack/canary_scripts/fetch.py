"""Run inside a sandbox by the canary (devstack/canary.py): `python3 fetch.py URL... [--header K:V]`.

Tries each URL by each route, a line each: `proxy`, urllib with the proxy settings (a plain-HTTP
URL goes to the proxy as a GET); `tunnel`, a CONNECT through the proxy settings whatever the
scheme; `direct`, no proxy at all. Exit 0, printing `ESCAPED: …`, when any target itself
answered: through a tunnel or over HTTPS any HTTP status (the connection was with the target),
otherwise a 2xx (an error status may be the proxy's own). Otherwise exit 1, having said why for
each. The body is never printed: it may hold a token.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

ROUTES = ("proxy", "tunnel", "direct")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def tunnel(url: str, headers: dict[str, str]) -> str:
    """CONNECT to the URL's host through the proxy, then GET it: any answer is the target's."""
    proxy = next((os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)), "")
    if not proxy:
        raise OSError("no proxy settings")
    via, target = urllib.parse.urlsplit(proxy), urllib.parse.urlsplit(url)
    secure = target.scheme == "https"
    kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection  # TLS inside the tunnel
    connection = kind(via.hostname or "", via.port or 80, timeout=5)
    try:
        connection.set_tunnel(target.hostname or "", target.port or (443 if secure else 80))
        connection.request("GET", target.path or "/", headers=headers)
        return f"answered {connection.getresponse().status} through a tunnel"
    finally:
        connection.close()


def fetch(url: str, route: str, headers: dict[str, str]) -> str:
    """What answered, as words; raises when nothing from the target did."""
    if route == "tunnel":
        return tunnel(url, headers)
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if route == "direct" else []))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=5) as answer:
            return f"answered {answer.status} ({len(answer.read())} bytes)"
    except urllib.error.HTTPError as error:
        if url.startswith("https:"):
            return f"answered {error.code}"
        raise OSError(f"HTTP {error.code}, not from the target") from None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--header", action="append", default=[], help="K:V")
    args = parser.parse_args()
    headers = {k.strip(): v.strip() for k, _, v in (header.partition(":") for header in args.header)}
    escaped = False
    for url in args.urls:
        host = urllib.parse.urlsplit(url).netloc
        for route in ROUTES:
            try:
                said = fetch(url, route, headers)
            except Exception as error:  # any failure to get an answer is what the probe hopes for
                print(f"not reached: python {route} {host}: {type(error).__name__}: {error}")
                continue
            print(f"ESCAPED: python {route} {host} {said}")
            escaped = True
    return 0 if escaped else 1


if __name__ == "__main__":
    sys.exit(main())
