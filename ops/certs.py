"""Development TLS certificates: a private CA and a server certificate it signs (``qserver certs``).

nginx serves REST and gRPC on ``settings.nginx_tls_port`` when ``settings.tls_path`` holds
``server.crt`` and ``server.key``. For development, :func:`make_dev_certs` writes those two plus
``ca.crt``/``ca.key``; a client trusts ``ca.crt`` (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` for gRPC,
``REQUESTS_CA_BUNDLE`` for REST). Real certificates (certbot) go in the same two files instead.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity browsers and Apple platforms accept for a server cert
RENEW_BEFORE_DAYS = 30  # a server certificate closer than this to its end is reissued

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertError(RuntimeError):
    """The certificate directory holds files ``qserver certs`` must not replace, or bad hosts."""


@dataclass(frozen=True)
class CertPaths:
    """The four files of a development TLS set-up."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def cert_paths(directory: Path) -> CertPaths:
    """Where ``make_dev_certs`` puts its files in ``directory`` (the names nginx's config uses)."""
    directory = Path(directory).expanduser().absolute()
    return CertPaths(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )


def default_hosts() -> list[str]:
    """localhost, 127.0.0.1, ::1 and this machine's host name (and its FQDN when it has one)."""
    hosts = ["localhost", "127.0.0.1", "::1"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in hosts and name != "localhost.localdomain":
            hosts.append(name)
    return hosts


def _parse_host(host: str) -> x509.GeneralName:
    host = host.strip().strip("[]")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if (
        not name
        or not name.isascii()
        or any(not label or len(label) > 63 for label in labels)
        or any(not all(c.isalnum() or c in "-*" for c in label) for label in labels)
        or "*" in name.lstrip("*.")
    ):
        raise CertError(f"not a host name or IP address: {host!r}")
    return x509.DNSName(name)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        name = _parse_host(host)
        if name not in names:
            names.append(name)
    if not names:
        raise CertError("at least one host name or IP address is needed")
    return names


def san_hosts(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    """The DNS names and IP addresses a certificate's SubjectAltName covers."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.IPAddress)


def load_cert(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (a certbot fullchain.pem starts with the leaf)."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically with ``mode``; a symlink at ``path`` is replaced, not followed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "QServer development"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"QServer development CA ({socket.gethostname()})"),
        ]
    )
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(signs_certificates=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures only; a CA's key also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _make_server(
    names: list[x509.GeneralName], ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0].value
    now = _now()
    public = key.public_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(first))]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(signs_certificates=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_ca(p: CertPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """Our CA if both its files are there, readable and it has some life left; else None."""
    try:
        cert = load_cert(p.ca_cert)
        key = serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return None
    return cert, key


def _server_still_good(p: CertPaths, ca: x509.Certificate, names: list[x509.GeneralName]) -> bool:
    """server.crt/.key exist, match, were signed by ``ca``, cover ``names``, and have time left."""
    try:
        cert = load_cert(p.server_cert)
        key = serialization.load_pem_private_key(p.server_key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, x509.InvalidSignature):
        return False
    if key.public_key() != cert.public_key():
        return False
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    dns, ips = san_hosts(cert)
    covered = {x509.DNSName(n) for n in dns} | {x509.IPAddress(i) for i in ips}
    return all(name in covered for name in names)


def make_dev_certs(directory: Path, hosts: list[str] | None = None, *, force: bool = False) -> CertPaths:
    """A development CA and a server certificate it signs, for ``hosts``, in ``directory``.

    Writes ``ca.crt``, ``ca.key`` (a self-signed CA, CA:TRUE), ``server.crt`` and
    ``server.key`` (SubjectAltName: a DNS name or IP address per host); key files are mode
    0600, the directory 0700 when created. Idempotent: files that are still good are kept; a
    server certificate that lacks one of the ``hosts`` given (or is near its end) is reissued
    for exactly those hosts by the same CA, so clients that trust ``ca.crt`` keep working.
    ``force`` makes a new CA and server pair.

    Args:
        directory: where the files go (``settings.tls_path``).
        hosts: DNS names and IP addresses; default :func:`default_hosts` for a new certificate
            (and, when omitted, any good existing server certificate is kept as it is).
        force: replace everything, including a server certificate this function did not make.

    Raises:
        CertError: a host is malformed, or ``server.crt`` exists without our ``ca.key`` beside
            it (a real certificate, which only ``force`` replaces).
    """
    p = cert_paths(directory)
    wanted = _names(hosts) if hosts else []
    names = wanted or _names(default_hosts())
    p.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = None if force else _load_ca(p)
    if ca is None and not force and (p.server_cert.exists() or p.server_cert.is_symlink()) and not p.ca_key.exists():
        raise CertError(
            f"{p.server_cert} exists and was not made by `qserver certs` (no ca.key beside it); "
            "pass --force to replace it with a development certificate"
        )
    if ca is None:
        ca_cert, ca_key = _make_ca()
        _write(p.ca_key, _key_pem(ca_key), 0o600)
        _write(p.ca_cert, _cert_pem(ca_cert), 0o644)
    else:
        ca_cert, ca_key = ca
        if _server_still_good(p, ca_cert, wanted):
            return p
    cert, key = _make_server(names, ca_cert, ca_key)
    _write(p.server_key, _key_pem(key), 0o600)
    _write(p.server_cert, _cert_pem(cert), 0o644)
    return p
