"""The one address policy for URLs a service fetches on a user's behalf (imports, later webhooks).

A URL a user hands us must not become a way into our own network (SSRF): the image library
would fetch the cloud metadata service, the API's own port or NATS and hand the bytes back. So:

- the scheme must be allowed, the URL must not carry ``user:pass@`` credentials;
- the host is resolved *once*, every address it resolves to is checked, and the connection goes
  to that checked address (an aiohttp resolver: no second DNS lookup a rebinding server could
  answer differently);
- loopback, link-local (the metadata range 169.254.0.0/16 included), private, shared (CGNAT),
  multicast, unspecified and reserved addresses are refused, IPv4-mapped IPv6 forms of them too,
  unless a network in ``LQ_IMPORT_ALLOWED_NETWORKS`` contains the address;
- redirects are followed here, one hop at a time, each hop checked like the first URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from limiquantix.common.errors import LimiquantixError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: AWS/GCP/Azure/OpenStack at 169.254.169.254 (inside link-local, but
# named here so no allow-list of "private" ranges lets them through by accident), AWS's IPv6 one.
METADATA_NETWORKS: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fd00:ec2::254/128"),
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RESOLVE_TIMEOUT_S = 10.0


class OutboundRefused(LimiquantixError):
    """The URL or an address it resolves to is not one we may fetch from."""

    code = "outbound_refused"
    status = 422
    default_hint = (
        "Use a public http(s) URL without credentials. Loopback, private and link-local "
        "sources need their network in LQ_IMPORT_ALLOWED_NETWORKS on the image library."
    )


class SchemeNotAllowed(OutboundRefused):
    """The URL's scheme is not in the allowed list (e.g. ``file:``)."""

    code = "scheme_not_allowed"
    default_hint = "Use an http(s) URL, or add the scheme to LQ_IMPORT_ALLOWED_SCHEMES."


class HostNotResolved(OutboundRefused):
    """The URL's host name did not resolve (so no address could be checked or used)."""

    code = "host_not_resolved"
    default_hint = "Check the host name in the URL and the image library's DNS."


def parse_networks(text: str) -> tuple[IpNetwork, ...]:
    """A comma-separated CIDR list (``10.0.0.0/8,127.0.0.1/32``); a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in text.split(",") if part.strip())


def refusal(address: IpAddress) -> str:
    """Why ``address`` may not be fetched from by default ('' when it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        reason = refusal(address.ipv4_mapped)
        return f"IPv4-mapped {reason}" if reason else ""
    if any(address in net for net in METADATA_NETWORKS if net.version == address.version):
        return "a metadata/link-local address"
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("reserved", address.is_reserved), ("private", address.is_private),
              ("non-global", not address.is_global))
    return next((f"a {name} address" for name, hit in checks if hit), "")


@dataclass(frozen=True, kw_only=True)
class OutboundPolicy:
    """Which URLs and addresses may be fetched from."""

    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    allowed_networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def for_imports(cls, *, schemes: str, networks: str) -> OutboundPolicy:
        """From the settings' comma-separated lists (``import_allowed_*``)."""
        return cls(
            allowed_schemes=frozenset(s.strip().lower() for s in schemes.split(",") if s.strip()),
            allowed_networks=parse_networks(networks),
        )

    def check_address(self, address: IpAddress, *, url: str = "") -> None:
        """Raise OutboundRefused unless ``address`` is public or explicitly allowed."""
        reason = refusal(address)
        if not reason:
            return
        candidates = (address, address.ipv4_mapped) if isinstance(
            address, ipaddress.IPv6Address) and address.ipv4_mapped else (address,)
        if any(a in net for a in candidates for net in self.allowed_networks
               if net.version == a.version):
            return
        raise OutboundRefused(f"refusing to fetch from {address} ({reason})",
                              address=str(address), **({"url": url} if url else {}))

    def check_url(self, url: str) -> str:
        """Check what the URL itself says (scheme, credentials, a literal IP); returns the host."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in self.allowed_schemes:
            raise SchemeNotAllowed(
                f"URL scheme {parts.scheme or '(none)'!r} is not allowed (allowed: "
                f"{', '.join(sorted(self.allowed_schemes))})", url=url,
            )
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise OutboundRefused(f"URL {url!r} has a malformed host or port") from None
        if not host:
            raise OutboundRefused(f"URL {url!r} names no host", url=url)
        if parts.username is not None or parts.password is not None:
            # Never echo the URL back: it holds the credentials.
            raise OutboundRefused("URLs with credentials (user:password@) are not allowed",
                                  hint="Put the file where it can be fetched without "
                                       "credentials in the URL.")
        with contextlib.suppress(ValueError):
            self.check_address(ipaddress.ip_address(host), url=url)
        return host

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[ResolveResult]:
        """Resolve ``host`` once (getaddrinfo in a thread); every address is checked."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=family,
            ), RESOLVE_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise HostNotResolved(f"cannot resolve {host!r}: {type(exc).__name__}") from None
        results: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            # One refused address refuses the host: a name that resolves to both a public and
            # an internal address is either misconfigured or an attack.
            self.check_address(address, url=host)
            results.append(ResolveResult(
                hostname=host, host=str(sockaddr[0]), port=int(sockaddr[1]), family=fam,
                proto=proto, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            ))
        if not results:
            raise HostNotResolved(f"{host!r} resolves to no address")
        return results


class TooManyRedirects(LimiquantixError):
    """The source redirected more often than allowed (a loop, or a detour)."""

    code = "too_many_redirects"
    status = 502
    default_hint = "Use the file's final URL."


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that answers only with addresses the policy allows."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return await self._policy.resolve(host, port, family)

    async def close(self) -> None:
        return None


def client_session(policy: OutboundPolicy, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose every connection goes through the policy's resolver (no proxies from
    the environment, no DNS cache: each connection is checked at the time it is made)."""
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)


@contextlib.asynccontextmanager
async def fetch(
    session: aiohttp.ClientSession, policy: OutboundPolicy, url: str, *,
    headers: Mapping[str, str] | None = None, max_redirects: int = 5,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET ``url`` with redirects followed here, every hop checked; yields the final response.

    ``session`` must come from :func:`client_session` with the same policy (a literal IP is
    checked here, a host name by its resolver at connection time).
    """
    for _ in range(max_redirects + 1):
        policy.check_url(url)
        response = await session.get(url, headers=headers, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status not in REDIRECT_STATUSES or not location:
            try:
                yield response
            finally:
                response.release()
            return
        response.release()
        url = urljoin(url, location)
    raise TooManyRedirects(f"more than {max_redirects} redirects")
