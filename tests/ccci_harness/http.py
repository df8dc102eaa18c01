"""The `http` fixture's session: requests against the app's base URL, through the stand-in proxy
when CCCI_HTTP_PROXY is set, with a default timeout and bounded retries for a proxy or app that
is still settling (connection refused, 502/503/504 on idempotent methods)."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (10, 60)  # (connect, read) seconds


class AppSession(requests.Session):
    """A Session whose relative paths resolve against the app's base URL."""

    def __init__(self, base_url: str, proxy: str | None, verify: bool, retries: int = 4):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        # The host's own proxy settings must not reroute test traffic.
        self.trust_env = False
        if proxy:
            self.proxies = {"http": proxy, "https": proxy}
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
