"""Webhook transport: where a trader's endpoint may be, and one POST to it (docs/webhooks.md).

A webhook URL is chosen by a trader, so the hub must not become a way to reach what only it can reach
(server-side request forgery): its own loopback, the private network it runs in, a cloud's metadata service at
169.254.169.254. The `Guard` refuses such URLs when they are registered, and again at every delivery after
resolving the name, because DNS may answer differently by then (rebinding). The connection then goes to the
address that was checked, not to a second lookup: the request is made to the IP itself, with the name in the
Host header and in TLS's SNI, and the certificate is verified against the name. Redirects are not followed (a
3xx is a failed attempt: following it would reach an address nobody checked), proxies from the environment
are ignored (one would connect for us to anything), each attempt has one overall deadline, and at most
`BODY_CAP` bytes of an answer are read.

`TRADEHUB_WEBHOOK_ALLOW_PRIVATE=1` (`Guard(allow_private=True)`) lets http and private, loopback and link-local
addresses through, for development and tests; multicast, unspecified and reserved addresses stay refused.

Transport only: what to send and when, and what an answer means for the delivery, is followers/webhooks.py's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)
MAX_URL = 2048
BODY_CAP = 16 * 1024  # bytes of an endpoint's answer read at most: only its status matters
CONNECT_TIMEOUT = 5.0  # seconds, within the attempt's deadline
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix: the IPv4 address is the last 32 bits
# Refused whatever they seem to carry: local-use NAT64 (RFC 8215; where the IPv4 address sits depends on the
# operator's prefix length, so it cannot be judged) and the deprecated site-local range (RFC 3879).
_NEVER = ((ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64"), (ipaddress.ip_network("fec0::/10"),
                                                                          "site-local"))
# What ALLOW_PRIVATE lets through: where a developer's receiver runs. The rest is never an endpoint.
_DEVELOPMENT = ("loopback", "private", "link-local", "not globally routable")


class Refused(ValueError):
    """The URL, or an address its host resolves to, is not somewhere the hub sends webhooks.

    Its text is shown to the trader (the API's 422, the delivery log), so it never names what the hub's resolver
    answered: which internal addresses a name leads to is for the server's log only.
    """


@dataclass(frozen=True)
class Target:
    """A checked URL, split as the connection needs it."""

    url: str
    scheme: str
    host: str  # lower case; an IDN in its ASCII (punycode) form; an IPv6 address without brackets
    port: int
    path: str  # with the query

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == {"https": 443, "http": 80}[self.scheme] else f"{name}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        """The URL with `address` in place of the host: what the connection is made to."""
        shown = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{shown}:{self.port}{self.path}"


def refusal(address: IPAddress) -> str | None:
    """Why the hub may not connect to `address` ("loopback", "private"...); None for a public unicast address.

    An IPv6 address that carries an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64) is judged by
    the IPv4 address it leads to.
    """
    for network, reason in _NEVER:
        if address.version == network.version and address in network:
            return reason
    inner = _embedded_ipv4(address)
    if inner is not None:
        return refusal(inner)
    for reason, matches in (("loopback", address.is_loopback), ("unspecified", address.is_unspecified),
                            ("multicast", address.is_multicast), ("link-local", address.is_link_local),
                            ("reserved", address.is_reserved), ("private", address.is_private),
                            ("not globally routable", not address.is_global)):
        if matches:
            return reason
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host`, as text."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))


@dataclass(frozen=True)
class Guard:
    """Where webhooks may go: the URL's form, and the addresses its host resolves to."""

    allow_private: bool = False
    resolver: Resolver = system_resolver

    def check(self, url: str) -> Target:
        """The URL split, if its form is acceptable and a literal address in it is allowed; `Refused` otherwise.

        A host name is not resolved here: `addresses` does that, at registration and before each delivery.
        """
        if not isinstance(url, str) or not url:
            raise Refused("must be an absolute https:// URL")
        if len(url) > MAX_URL:
            raise Refused(f"is {len(url)} characters long; at most {MAX_URL}")
        bad = next((char for char in url if ord(char) <= 0x20 or ord(char) == 0x7F), None)
        if bad is not None:
            raise Refused(f"contains a space or control character (U+{ord(bad):04X}); percent-encode it")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise Refused(f"is not a valid URL: {error}") from None
        if port == 0:
            raise Refused("has port 0, which nothing listens on")
        schemes = ("https", "http") if self.allow_private else ("https",)
        if parts.scheme.lower() not in schemes:
            raise Refused("must use https://" + (" or http://" if self.allow_private else "")
                          + f", got {parts.scheme[:10] + ':' if parts.scheme else 'no scheme'}")
        if parts.username is not None or parts.password is not None:
            raise Refused("must not carry a user name or password (user@host): the hub signs what it sends")
        if parts.fragment or url.endswith("#"):
            raise Refused("must not have a fragment (#...): it is never sent")
        if not parts.hostname:
            raise Refused("has no host")
        scheme = parts.scheme.lower()
        host = _ascii_host(parts.hostname)
        target = Target(url, scheme, host, {"https": 443, "http": 80}[scheme] if port is None else port,
                        (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        literal = _literal(host)
        if literal is not None:
            self.admit(literal)
        return target

    def admit(self, address: IPAddress) -> IPAddress:
        """`address`, written in the URL itself, if the hub may connect to it; `Refused` naming why not."""
        reason = self._refusal(address)
        if reason is not None:
            raise Refused(f"leads to {address}, a {reason} address; webhooks go to public addresses only")
        return address

    def _refusal(self, address: IPAddress) -> str | None:
        reason = refusal(address)
        return None if reason is None or (self.allow_private and reason in _DEVELOPMENT) else reason

    def addresses(self, target: Target) -> list[IPAddress]:
        """Every address the target's host resolves to, each allowed; `Refused` if one is not, or none resolve.

        One refused address refuses the URL: a name that resolves to a public and a private address would
        otherwise reach the private one whenever the resolver's order changes.
        The refusal names no address and no resolver error (`Refused`); the server's log has them.
        """
        literal = _literal(target.host)
        if literal is not None:
            return [self.admit(literal)]
        try:
            found = [ipaddress.ip_address(text) for text in self.resolver(target.host, target.port)]
        except (OSError, UnicodeError, ValueError) as error:
            log.warning("webhook host %s does not resolve: %s", target.host, error)
            raise Refused(f"host {target.host} does not resolve") from None
        if not found:
            log.warning("webhook host %s resolves to no address", target.host)
            raise Refused(f"host {target.host} does not resolve")
        refused = {str(address): reason for address in found if (reason := self._refusal(address)) is not None}
        if refused:
            log.warning("webhook host %s refused: it resolves to %s", target.host,
                        ", ".join(f"{address} ({reason})" for address, reason in refused.items()))
            raise Refused(f"host {target.host} resolves to a non-public address; webhooks go to public addresses "
                          "only")
        return found


def _ascii_host(hostname: str) -> str:
    host = hostname.lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise Refused(f"has a host name that is not a valid internationalised name: {hostname[:80]!r}") from None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: the endpoint's status, or why there was none (`error`), and how long it took."""

    status: int | None
    error: str | None
    latency_ms: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None


def tls_context() -> ssl.SSLContext:
    """The certificate checks of every attempt (httpx's defaults: its CA bundle, the host name verified). Build it
    once and pass it to each `post`: building one loads the CA bundle, tens of milliseconds on the event loop."""
    return httpx.create_ssl_context()


async def post(guard: Guard, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float,
               verify: ssl.SSLContext | bool = True) -> Answer:
    """POST `body` to `url` once, through `guard`, within `timeout` seconds in all (resolving included)."""
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        return await asyncio.wait_for(_post(guard, url, body, headers, timeout, verify, elapsed), timeout)
    except TimeoutError:
        return Answer(None, f"no answer within {timeout:g} s", elapsed())
    except Refused as error:
        return Answer(None, f"refused: the URL {error}", elapsed())
    except httpx.HTTPError as error:
        return Answer(None, _transport_error(error), elapsed())


async def _post(guard: Guard, url: str, body: bytes, headers: Mapping[str, str], timeout: float,
                verify: ssl.SSLContext | bool, elapsed: Callable[[], int]) -> Answer:
    target = guard.check(url)
    address = (await asyncio.to_thread(guard.addresses, target))[0]
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    limits = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=verify, timeout=limits) as client:
        request = client.build_request("POST", target.url_for(address), content=body,
                                       headers={**headers, "Host": target.host_header}, extensions=extensions)
        response = await client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= BODY_CAP:
                    break
        finally:
            await response.aclose()
    status = response.status_code
    if 300 <= status < 400:
        where = response.headers.get("location", "")[:200]
        return Answer(status, f"redirect to {where or '(no Location)'} not followed: the endpoint must answer 2xx "
                              "itself", elapsed())
    return Answer(status, None, elapsed())


def _transport_error(error: httpx.HTTPError) -> str:
    kinds = {httpx.ConnectTimeout: "connection timed out", httpx.ConnectError: "cannot connect",
             httpx.ReadTimeout: "no answer in time", httpx.WriteTimeout: "could not send in time",
             httpx.RemoteProtocolError: "not an HTTP answer"}
    kind = next((words for cls, words in kinds.items() if isinstance(error, cls)), "transport error")
    detail = str(error)[:200]
    return f"{kind}: {detail}" if detail else kind
