"""The `http` fixture's session: requests against the app's base URL — at the address
CCCI_RESOLVE names for the app's name where no DNS knows it (the name kept for TLS and Host) —
with a default timeout and bounded retries for a proxy or app that is still settling
(connection refused, 502/503/504 on idempotent methods)."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (10, 60)  # (connect, read) seconds

_RULES: list = []


def resolve_names(rule) -> None:
    """Connections to names matching `rule` (a context.Resolve) go to its address. urllib3
    opens every socket through urllib3.util.connection.create_connection with the host name it
    also uses for SNI, certificate checks and the Host header, so swapping the address there
    changes nothing else, like `curl --resolve`. Process-wide: a suite talks to one app."""
    import urllib3.util.connection as connection

    if rule in _RULES:
        return
    if not _RULES:
        original = connection.create_connection

        def create_connection(address, *args, **kwargs):
            host, port = address
            for r in _RULES:
                if r.matches(host):
                    return original((r.address, port), *args, **kwargs)
            return original(address, *args, **kwargs)

        connection.create_connection = create_connection
    _RULES.append(rule)


class AppSession(requests.Session):
    """A Session whose relative paths resolve against the app's base URL."""

    def __init__(self, base_url: str, verify, retries: int = 4, resolve=None):
        super().__init__()
        if resolve is not None:
            resolve_names(resolve)
        self.base_url = base_url.rstrip("/")
        # The host's own proxy settings must not reroute test traffic.
        self.trust_env = False
        self.verify = verify
        retry = Retry(
            total=retries,
            connect=retries,
            read=1,
            status=retries,
            backoff_factor=0.5,
            backoff_max=5,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + "/" + path.lstrip("/")

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        # Redirects are the app's answer; tests that want them followed say so.
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, self.url(url), *args, **kwargs)
