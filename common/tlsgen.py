"""TLS certificates for a NATS deployment: a CA, and certificates it signs.

``python -m common.tlsgen --dir certs --cert nats1=10.0.0.11,nats1.example --cert gateway``
writes ``certs/ca.pem`` (the CA every client and server trusts), ``certs/ca-key.pem``, and
for each ``--cert NAME[=SAN,SAN...]`` ``certs/NAME.pem`` with ``certs/NAME-key.pem``. Each
certificate is good for both ends of a connection (server and client authentication): a
NATS server presents it to clients and to the other servers of its cluster, whose routes
verify each other both ways; a service may present one to a server that verifies clients.
``localhost`` and ``127.0.0.1`` are always among the names, and ``NAME`` itself.

What exists is kept (run it again to add a certificate), and each line it prints says
``made`` or ``kept``; ``--force`` makes new ones. Keys are ECDSA P-256, written 0600.
"""

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CERT_DAYS = 825


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    made: bool = False  # False: they were there already


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # in order, once each
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_ca(directory: Path, common_name: str = "faas NATS CA", force: bool = False) -> Issued:
    """``ca.pem`` and ``ca-key.pem`` in ``directory``, made if missing (or ``force``)."""
    directory.mkdir(parents=True, exist_ok=True)
    issued = Issued(directory / "ca.pem", directory / "ca-key.pem")
    if issued.cert.exists() and issued.key.exists() and not force:
        return issued
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return Issued(issued.cert, issued.key, made=True)


def issue(directory: Path, name: str, sans: list[str] | None = None, force: bool = False) -> Issued:
    """``NAME.pem`` and ``NAME-key.pem`` signed by the CA in ``directory`` (made if missing),
    for server and client authentication, with ``name``, ``sans``, localhost and 127.0.0.1."""
    ca = ensure_ca(directory)
    issued = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
    if issued.cert.exists() and issued.key.exists() and not force:
        return issued
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san([name, *(sans or []), "localhost", "127.0.0.1"]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return Issued(issued.cert, issued.key, made=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.tlsgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the CA and the certificates go")
    parser.add_argument(
        "--cert",
        action="append",
        default=[],
        metavar="NAME[=SAN,...]",
        help="a certificate for NAME (a server or a service), with more DNS names or IP addresses",
    )
    parser.add_argument("--force", action="store_true", help="make new ones even where they exist")
    args = parser.parse_args(argv)
    ca = ensure_ca(args.dir, force=args.force)
    print(f"CA {'made' if ca.made else 'kept'}: {ca.cert}")
    for spec in args.cert:
        name, _, sans = spec.partition("=")
        issued = issue(args.dir, name, [s for s in sans.split(",") if s], force=args.force)
        print(f"{name} {'made' if issued.made else 'kept'}: {issued.cert} {issued.key}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
