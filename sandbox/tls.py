"""A local certificate authority for the sandbox's HTTPS listeners.

`LocalCA` keeps a self-signed CA (EC P-256) in a directory, loading it when it is already
there, and issues leaf certificates for lists of DNS names (wildcards allowed). Clients
trust the sandbox by verifying against `ca_path` or by using `client_context()`.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_COMMON_NAME = "tomcat-fleet sandbox CA"
CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 365
_CLOCK_SKEW = datetime.timedelta(days=1)
_CN_MAX = 64  # X.509 upper bound for a CommonName; the SAN carries the full names


def _write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write atomically (temp file + rename) with the given permissions."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - _CLOCK_SKEW, now + datetime.timedelta(days=days)


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(CA_VALID_DAYS)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_COMMON_NAME))
        .issuer_name(_name(CA_COMMON_NAME))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class LocalCA:
    """A CA stored as `ca.pem` / `ca-key.pem` in `directory`; issues cached leaf contexts."""

    def __init__(self, directory: str) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._cert, self._key = self._load_or_create()
        self._servers: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._client: ssl.SSLContext | None = None

    @property
    def ca_path(self) -> str:
        """Path of the CA certificate (PEM), for clients' verify options."""
        return os.path.join(self.directory, "ca.pem")

    @property
    def key_path(self) -> str:
        return os.path.join(self.directory, "ca-key.pem")

    def _load_or_create(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if os.path.exists(self.ca_path) and os.path.exists(self.key_path):
            with open(self.ca_path, "rb") as fh:
                cert = x509.load_pem_x509_certificate(fh.read())
            with open(self.key_path, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return cert, key
        cert, key = _new_ca()
        _write_file(self.key_path, _key_pem(key), 0o600)
        _write_file(self.ca_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def server_context(self, domains: list[str]) -> ssl.SSLContext:
        """A TLS server context whose certificate covers `domains` (first one is the CN)."""
        if not domains:
            raise ValueError("server_context needs at least one domain name")
        cache_key = tuple(sorted(domains))
        ctx = self._servers.get(cache_key)
        if ctx is None:
            ctx = self._issue(domains, cache_key)
            self._servers[cache_key] = ctx
        return ctx

    def _issue(self, domains: list[str], cache_key: tuple[str, ...]) -> ssl.SSLContext:
        cert, key = self._leaf(domains)
        stem = hashlib.sha256("\n".join(cache_key).encode()).hexdigest()[:16]
        cert_path = os.path.join(self.directory, f"leaf-{stem}.pem")
        key_path = os.path.join(self.directory, f"leaf-{stem}-key.pem")
        _write_file(key_path, _key_pem(key), 0o600)
        _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def _leaf(self, domains: list[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = _validity(LEAF_VALID_DAYS)
        public = key.public_key()
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(domains[0][:_CN_MAX]))
            .issuer_name(self._cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert, key

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this CA (shared: do not mutate it)."""
        if self._client is None:
            self._client = ssl.create_default_context(cafile=self.ca_path)
        return self._client
