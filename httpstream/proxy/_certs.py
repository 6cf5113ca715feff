"""The proxy's certificate authority and the leaf certificates it mints per host.

Theory of operation
-------------------
Intercepting a CONNECT means answering the client's TLS handshake as the host
it asked for, with a certificate the client trusts.  The client trusts it
because the user installed our CA certificate; this module owns that CA and
mints, per host, a leaf certificate signed by it.

The CA lives in ``confdir`` (default ``~/.httpstream``), in two files:

``httpstream-ca.pem``
    the CA private key followed by its certificate: the one secret.  It is
    created through ``os.open(..., 0o600)`` under a temporary name and then
    hard-linked into place, so it is never readable by others, not even for the
    moment between creation and a chmod, and a reader never sees it half
    written.  ``os.link`` fails when the name exists: of two processes that
    generate a CA at once, one wins and the other loads the winner's.
``httpstream-ca-cert.pem``
    the certificate alone (0644): what a user installs in a trust store or
    passes to ``curl --cacert``.  It is rewritten from the key file whenever it
    is missing or differs, so the key file is the single source of truth.

``confdir`` is created with mode 0700.  A key file that is group- or
world-accessible is refused (``CertStoreError``, saying how to fix it), as
ssh refuses an unprotected private key: such a CA may have been copied, and a
stolen interception CA lets anyone impersonate every site to this user.

Nothing touches the disk before the first use (``ensure()``, ``leaf_context()``
or ``print_ca()``); the proxy calls ``ensure()`` at start-up so that a broken
confdir fails there, not at the first CONNECT.

Keys: ECDSA P-256, for the CA and the leaves.  Generating one takes well under
a millisecond (RSA 2048 takes tens), and, more to the point for a proxy that
accepts many TLS connections, each server handshake signs with the leaf key:
an ECDSA P-256 signature costs a fraction of an RSA 2048 private operation.
Every TLS client in use (OpenSSL, BoringSSL, NSS, SChannel, Secure Transport,
Java 7+) accepts ECDSA certificates.

Leaves: all hosts share one leaf key, generated once per ``CertStore`` and
kept in memory only (mitmproxy does the same): minting is then one signature.
Each leaf names the host in its subjectAltName (an ``IPAddress`` entry for an
IPv4 or IPv6 literal, a ``DNSName`` otherwise: clients match only the SAN) and
in its CN (truncated to 64 characters, the X.509 bound), is valid from a day
ago (clients with a slow clock) for a year, and carries the extensions strict
verifiers (Python 3.13's ``VERIFY_X509_STRICT``, browsers) want:
``extendedKeyUsage serverAuth``, ``keyUsage digitalSignature``, the CA's
``AuthorityKeyIdentifier`` and its own ``SubjectKeyIdentifier``.

``ssl.SSLContext`` loads a certificate only from a file.  Each mint writes
key + leaf + CA certificate to a ``mkstemp`` file (0600) in confdir, loads it
and unlinks it at once: no certificate or key file is left behind and there is
nothing to clean up on exit.  The contexts are kept in an LRU bounded by
``max_hosts`` (1024 by default), keyed by host and ALPN list, so a host's
second connection costs a dictionary lookup.  A lock makes the store safe to
use from threads (a mint is short enough to run on the event loop).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_CERT_FILE", "CA_KEY_FILE", "CertStore", "CertStoreError"]

CA_KEY_FILE = "httpstream-ca.pem"
CA_CERT_FILE = "httpstream-ca-cert.pem"
CA_NAME = "httpstream"

_CA_VALIDITY = datetime.timedelta(days=3650)
_LEAF_VALIDITY = datetime.timedelta(days=365)
_CLOCK_SKEW = datetime.timedelta(days=1)
_CN_MAX = 64  # ub-common-name (RFC 5280, appendix A)


class CertStoreError(Exception):
    """The CA in confdir cannot be created, read or trusted."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey  # ours is EC; a CA of the user's own may be RSA


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _parse_host(host: str) -> str | IPAddress:
    """The canonical form of ``host``: an IP address, or a lower-case A-label name."""
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]  # "[::1]" as it appears in a CONNECT authority
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])  # a zone id ("fe80::1%eth0") is not in a certificate
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"not a valid host name: {host!r}") from exc
    if not name or any(c.isspace() or c in "/\\@" for c in name):
        raise ValueError(f"not a valid host name: {host!r}")
    return name


class CertStore:
    """The proxy's CA (in ``confdir``) and a bounded cache of per-host server contexts."""

    def __init__(self, confdir: str | os.PathLike[str] = "~/.httpstream", *, max_hosts: int = 1024) -> None:
        if max_hosts < 1:
            raise ValueError("max_hosts must be at least 1")
        self.confdir = os.path.abspath(os.path.expanduser(os.fspath(confdir)))
        self.max_hosts = max_hosts
        self._lock = threading.RLock()
        self._ca_key: CAKey | None = None
        self._ca_cert: x509.Certificate | None = None
        self._ca_pem = b""
        self._leaf_key = _new_key()
        self._leaf_key_pem = self._leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._contexts: OrderedDict[tuple[str, tuple[str, ...]], ssl.SSLContext] = OrderedDict()

    # -- the CA -------------------------------------------------------------------------

    @property
    def ca_path(self) -> str:
        """The key + certificate file (0600)."""
        return os.path.join(self.confdir, CA_KEY_FILE)

    @property
    def ca_cert_path(self) -> str:
        """The certificate-only file: what clients are told to trust."""
        return os.path.join(self.confdir, CA_CERT_FILE)

    @property
    def ca_cert(self) -> x509.Certificate:
        self.ensure()
        assert self._ca_cert is not None
        return self._ca_cert

    def ensure(self) -> None:
        """Load the CA from confdir, generating and writing it on first use."""
        with self._lock:
            if self._ca_key is not None:
                return
            try:
                self._make_confdir()
                if not os.path.exists(self.ca_path):
                    self._generate()
                key, cert, pem = self._load()
                self._write_cert_file(pem)
            except OSError as exc:
                raise CertStoreError(f"cannot set up the CA in {self.confdir}: {exc.strerror or exc}") from exc
            self._ca_key, self._ca_cert, self._ca_pem = key, cert, pem

    def print_ca(self) -> str:
        """The CA certificate's path and its PEM text (``httpstream proxy --print-ca``)."""
        self.ensure()
        return f"{self.ca_cert_path}\n{self._ca_pem.decode('ascii')}"

    def _make_confdir(self) -> None:
        if os.path.isdir(self.confdir):
            return
        os.makedirs(os.path.dirname(self.confdir), exist_ok=True)
        try:
            os.mkdir(self.confdir, 0o700)
        except FileExistsError:
            return
        os.chmod(self.confdir, 0o700)  # mkdir's mode went through the umask

    def _generate(self) -> None:
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        blob = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ) + cert.public_bytes(serialization.Encoding.PEM)
        tmp = os.path.join(self.confdir, f".{CA_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.ca_path)  # fails if another process got there first: theirs is kept
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)

    def _load(self) -> tuple[CAKey, x509.Certificate, bytes]:
        path = self.ca_path
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CertStoreError(
                    f"{path} is open to other users (mode {stat.S_IMODE(mode):04o}): the CA key may have"
                    f" been copied. Run `chmod 600 {path}` if you trust it, or delete it to generate a new CA"
                )
            blob = f.read()
        try:
            loaded = serialization.load_pem_private_key(blob, password=None)
            cert = x509.load_pem_x509_certificate(blob)
        except (ValueError, TypeError) as exc:
            raise CertStoreError(f"{path}: not a PEM private key followed by its certificate ({exc})") from exc
        if not isinstance(loaded, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise CertStoreError(f"{path}: the key is neither an EC nor an RSA key")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if loaded.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise CertStoreError(f"{path}: the certificate does not belong to the key")
        return loaded, cert, cert.public_bytes(serialization.Encoding.PEM)

    def _write_cert_file(self, pem: bytes) -> None:
        path = self.ca_cert_path
        try:
            with open(path, "rb") as f:
                if f.read() == pem:
                    return
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=self.confdir, prefix=f".{CA_CERT_FILE}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                os.fchmod(f.fileno(), 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    # -- the leaves ---------------------------------------------------------------------

    def leaf_context(self, host: str, *, alpn: Sequence[str] = ("h2", "http/1.1")) -> ssl.SSLContext:
        """A server-side SSLContext presenting a certificate for ``host``, signed by the CA.

        Minted at the first call for a host and ALPN list, then served from the LRU.
        """
        alpn = tuple(alpn)
        with self._lock:
            ctx = self._contexts.get((host, alpn))  # a host already in canonical form: no parsing
            if ctx is not None:
                self._contexts.move_to_end((host, alpn))
                return ctx
        parsed = _parse_host(host)
        key = (str(parsed), alpn)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is not None:
                self._contexts.move_to_end(key)
                return ctx
            ctx = self._mint(parsed, alpn)
            self._contexts[key] = ctx
            while len(self._contexts) > self.max_hosts:
                self._contexts.popitem(last=False)
            return ctx

    def cached_hosts(self) -> list[str]:
        """The hosts with a cached context, least recently used first."""
        with self._lock:
            return [host for host, _ in self._contexts]

    def _leaf_cert(self, host: str | IPAddress) -> x509.Certificate:
        self.ensure()
        ca_key, ca_cert = self._ca_key, self._ca_cert
        assert ca_key is not None and ca_cert is not None
        san: x509.GeneralName = x509.DNSName(host) if isinstance(host, str) else x509.IPAddress(host)
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(host)[:_CN_MAX])]))
            .issuer_name(ca_cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + _LEAF_VALIDITY, ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._leaf_key.public_key()), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
            .sign(ca_key, hashes.SHA256())
        )

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        assert self._ca_key is not None and self._ca_cert is not None
        try:
            ski = self._ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:  # a CA of the user's own without one
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def _mint(self, host: str | IPAddress, alpn: tuple[str, ...]) -> ssl.SSLContext:
        cert = self._leaf_cert(host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # also what HTTP/2 requires (RFC 9113, section 9.2)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        fd, tmp = tempfile.mkstemp(dir=self.confdir, prefix=".leaf-", suffix=".pem")  # 0600, in a 0700 dir
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self._leaf_key_pem + cert.public_bytes(serialization.Encoding.PEM) + self._ca_pem)
            ctx.load_cert_chain(tmp)
        finally:
            os.unlink(tmp)
        return ctx
