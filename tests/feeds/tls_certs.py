"""Test certificates made at test time with ``cryptography`` (never committed): a CA, a server certificate for
127.0.0.1/localhost, a client certificate from the CA and one from a CA nobody trusts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey,
                 *, ca: bool = False, usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_pki(folder: Path) -> Pki:
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "server", "client", "rogue_ca", "rogue")}
    ca = _certificate("careloom test CA", keys["ca"], "careloom test CA", keys["ca"], ca=True)
    ca_path, _ = _write(folder, "ca", ca, keys["ca"])
    server = _write(folder, "server", _certificate("localhost", keys["server"], "careloom test CA", keys["ca"],
                                                   usage=ExtendedKeyUsageOID.SERVER_AUTH), keys["server"])
    client = _write(folder, "client", _certificate("GENERAL_HOSPITAL", keys["client"], "careloom test CA", keys["ca"],
                                                   usage=ExtendedKeyUsageOID.CLIENT_AUTH), keys["client"])
    rogue = _write(folder, "rogue", _certificate("GENERAL_HOSPITAL", keys["rogue"], "someone else's CA",
                                                 keys["rogue_ca"], usage=ExtendedKeyUsageOID.CLIENT_AUTH),
                   keys["rogue"])
    return Pki(ca_path, *server, *client, *rogue)
