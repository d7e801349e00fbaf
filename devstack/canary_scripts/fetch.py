"""Run inside a sandbox by the canary (devstack/canary.py): `python3 fetch.py URL --route R [--header K:V]`.

Routes: `proxy`, urllib with the proxy settings (a plain-HTTP URL goes to the proxy as a GET);
`tunnel`, a CONNECT through the proxy settings whatever the scheme; `direct`, no proxy at all.
Exit 0, printing `ESCAPED: …`, only when the target itself answered: through a tunnel or over
HTTPS any HTTP status (the connection was with the target), otherwise a 2xx (an error status may
be the proxy's own). Otherwise exit 1, saying why. The body is never printed: it may hold a token.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def tunnel(url: str, headers: dict[str, str]) -> str:
    """CONNECT to the URL's host through the proxy, then GET it: any answer is the target's."""
    proxy = next((os.environ[name] for name in PROXY_VARIABLES if os.environ.get(name)), "")
    if not proxy:
        raise OSError("no proxy settings")
    via, target = urllib.parse.urlsplit(proxy), urllib.parse.urlsplit(url)
    port = target.port or (443 if target.scheme == "https" else 80)
    connection = http.client.HTTPConnection(via.hostname or "", via.port or 80, timeout=5)
    try:
        connection.set_tunnel(target.hostname or "", port)
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
    parser.add_argument("url")
    parser.add_argument("--route", choices=("proxy", "tunnel", "direct"), required=True)
    parser.add_argument("--header", action="append", default=[], help="K:V")
    args = parser.parse_args()
    headers = {k.strip(): v.strip() for k, _, v in (header.partition(":") for header in args.header)}
    host = urllib.parse.urlsplit(args.url).netloc
    try:
        said = fetch(args.url, args.route, headers)
    except Exception as error:  # any failure to get an answer is what the probe hopes for
        print(f"not reached: python {args.route} {host}: {type(error).__name__}: {error}")
        return 1
    print(f"ESCAPED: python {args.route} {host} {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
