"""Who may talk to the ADT listener: TLS (server certificate, optional client certificates), the source-address
allow-list and the sending-facility allow-list, all from settings and checked once at start.

An HL7 feed has no authentication of its own: whoever reaches the port can send any event for any patient
(an A13 withdraws a run). So outside development the listener must be reachable only by the plan's senders:
mutual TLS, source CIDRs and sending facilities (:func:`check_exposure` says what production requires).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.errors import ConfigurationError
from runtime.settings import Settings

__all__ = ["AdtAccess", "check_exposure", "server_tls_context"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The listener's TLS context (None: plain MLLP); a bad file fails here, naming the setting."""
    cert, key, ca = settings.adt_tls_cert_file, settings.adt_tls_key_file, settings.adt_tls_client_ca_file
    if cert is None and key is None:
        if ca is not None:
            raise ConfigurationError("CARELOOM_ADT_TLS_CLIENT_CA_FILE needs TLS: set CARELOOM_ADT_TLS_CERT_FILE "
                                     "and CARELOOM_ADT_TLS_KEY_FILE (the listener's certificate and key)")
        return None
    if cert is None or key is None:
        raise ConfigurationError("set both CARELOOM_ADT_TLS_CERT_FILE and CARELOOM_ADT_TLS_KEY_FILE, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigurationError(f"CARELOOM_ADT_TLS_CERT_FILE/CARELOOM_ADT_TLS_KEY_FILE could not be loaded "
                                 f"({type(err).__name__}: {err}); give a PEM certificate chain and its "
                                 "unencrypted PEM private key") from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise ConfigurationError(f"CARELOOM_ADT_TLS_CLIENT_CA_FILE could not be loaded ({type(err).__name__}: "
                                     f"{err}); give the PEM bundle of the CA that signs senders' "
                                     "certificates") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _networks(entries: Iterable[str]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigurationError(f"CARELOOM_ADT_ALLOWED_SOURCES: {entry!r} is not an address or CIDR; write "
                                     "e.g. [\"10.20.0.0/16\", \"192.0.2.7\"]") from None
    return tuple(networks)


def _facilities(entries: Iterable[str]) -> frozenset[str]:
    cleaned = set()
    for entry in entries:
        parts = entry.strip().split("^")
        if len(parts) > 2 or not all(parts):
            raise ConfigurationError(f"CARELOOM_ADT_ALLOWED_FACILITIES: {entry!r} is not FACILITY (MSH-4) or "
                                     "APPLICATION^FACILITY (MSH-3^MSH-4)")
        cleaned.add("^".join(parts))
    return frozenset(cleaned)


@dataclass(frozen=True)
class AdtAccess:
    """The allow-lists; empty means anyone (development on loopback)."""

    sources: tuple[Network, ...] = ()
    facilities: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> AdtAccess:
        return cls(_networks(settings.adt_allowed_sources), _facilities(settings.adt_allowed_facilities))

    def source_allowed(self, host: str | None) -> bool:
        if not self.sources:
            return True
        try:
            address = ipaddress.ip_address((host or "").split("%", 1)[0])
        except ValueError:  # not an IP peer (e.g. a Unix socket): nothing to match
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.sources)

    def facility_allowed(self, application: str, facility: str) -> bool:
        if not self.facilities:
            return True
        return facility in self.facilities or f"{application}^{facility}" in self.facilities


def check_exposure(settings: Settings, host: str, tls: ssl.SSLContext | None, access: AdtAccess) -> None:
    """Refuse to start a production listener that anyone who reaches the port could feed."""
    if settings.environment != "production":
        return
    missing = []
    # Bound to loopback, only a local TLS-terminating proxy (stunnel, the interface engine) can connect: it owns
    # TLS and source filtering; the facility list still applies to what it forwards.
    if not _loopback(host):
        if tls is None or tls.verify_mode != ssl.CERT_REQUIRED:
            missing.append("mutual TLS (CARELOOM_ADT_TLS_CERT_FILE, CARELOOM_ADT_TLS_KEY_FILE, "
                           "CARELOOM_ADT_TLS_CLIENT_CA_FILE)")
        if not access.sources:
            missing.append("CARELOOM_ADT_ALLOWED_SOURCES (the senders' CIDRs)")
    if not access.facilities:
        missing.append("CARELOOM_ADT_ALLOWED_FACILITIES (the senders' MSH-4)")
    if missing:
        raise ConfigurationError(f"CARELOOM_ENVIRONMENT=production: the ADT listener on {host} needs "
                                 + "; ".join(missing) + ". See docs/adt-listener.md, 'Exposure'.")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
