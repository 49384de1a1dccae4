"""The fetcher's httpx2 clients: one per transport spec, and token clients of their own."""

from __future__ import annotations

import dataclasses
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx2

from crawler.fetcher.transport import ACCEPT_ENCODING, TransportFactory, proxy_from
from crawler.settings import FetchSettings
from crawler.specs import Profile, Profiles, TransportSpec


class Clients:
    """One pooled client serves every URL whose transport settings (proxy, TLS material) are
    the top-level ones; each profile that needs another transport gets a client of its own,
    created on first use and reused. Headers, credentials, cookies and timeouts are per
    request, so they never need a client of their own.

    An OAuth2 token endpoint gets a client of its own too: its host's transport, no
    credentials, and pools of its own. In the protected host's pool a token request could
    wait for a connection held by a request that waits for the token.
    """

    def __init__(
        self,
        settings: FetchSettings,
        make_transport: TransportFactory,
        profiles: Profiles,
        timeout: httpx2.Timeout,
    ) -> None:
        self._settings = settings
        self._make_transport = make_transport
        self._profiles = profiles
        self._timeout = timeout
        self._default = TransportSpec(proxy=proxy_from(settings), ca_bundle=settings.ca_bundle)
        self._clients: dict[TransportSpec, httpx2.AsyncClient] = {}
        self._token_clients: dict[TransportSpec, httpx2.AsyncClient] = {}
        self._transports: dict[httpx2.AsyncClient, httpx2.AsyncBaseTransport] = {}
        self.default = self.for_profile(None)
        # What the default client sends through: the fetcher hands a request without
        # credentials or cookies to it directly (the client's layers would add nothing).
        self.default_transport = self._transports[self.default]

    def spec_of(self, profile: Profile | None) -> TransportSpec:
        """The transport a profile's URLs go through: its own, filled in from the defaults."""
        if profile is None:
            return self._default
        own = profile.transport
        return dataclasses.replace(
            own,
            proxy=own.proxy or self._default.proxy,
            ca_bundle=own.ca_bundle or self._default.ca_bundle,
        )

    def for_profile(self, profile: Profile | None) -> httpx2.AsyncClient:
        spec = self.spec_of(profile)
        client = self._clients.get(spec)
        if client is None:
            client = self._clients[spec] = self._new(spec)
        return client

    def for_token_url(self, url: str) -> httpx2.AsyncClient:
        spec = self.spec_of(self._profiles.match(url))
        client = self._token_clients.get(spec)
        if client is None:
            client = self._token_clients[spec] = self._new(spec)
        return client

    def _new(self, spec: TransportSpec) -> httpx2.AsyncClient:
        transport = self._make_transport(spec)
        client = httpx2.AsyncClient(
            transport=transport,
            timeout=self._timeout,
            follow_redirects=False,
            trust_env=False,
            # A bulk fetcher keeps no cookies: a shared jar would grow with every site
            # that sets one (memory must not depend on the crawl's size) and leak them
            # between unrelated URLs of a host.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            headers={
                "User-Agent": self._settings.user_agent,
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self._transports[client] = transport
        return client

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._token_clients.values()]:
            await client.aclose()
