"""A throwaway PKI for TLS tests: a CA made per test and a "localhost" certificate it signs.

Nothing here is a secret: the keys are generated when a test runs and written
to a temporary directory the test removes.
"""

import datetime
from collections import namedtuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl

__all__ = ["PKI", "make_pki"]

#: ``ca_file``: the CA certificate (PEM path); ``server_pem``: the server's key and
#: certificate in one PEM file (for ``ssl:...:privateKey=``); ``certificate``: the same
#: as a Twisted ``PrivateCertificate``.
PKI = namedtuple("PKI", "ca_file server_pem certificate")


def _cert(subject, issuer, public_key, signing_key, ca, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                        critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def make_pki(tmp):
    """A CA and a certificate for "localhost" it signs, written under the directory ``tmp``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("broker test CA", "broker test CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("localhost", "broker test CA", key.public_key(), ca_key, False, ["localhost"])
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pem = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
           + cert.public_bytes(serialization.Encoding.PEM))
    server_pem = tmp / "server.pem"
    server_pem.write_bytes(pem)
    return PKI(str(ca_file), str(server_pem), ssl.PrivateCertificate.loadPEM(pem))


def make_pki_with_clients(tmp, *client_names):
    """:func:`make_pki`'s CA and server certificate, plus one client certificate (key and
    certificate in one PEM file) per name in ``client_names``: ``(pki, {name: path})``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("broker test CA", "broker test CA", ca_key.public_key(), ca_key, True)
    ca_file = tmp / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths = {}
    pems = {}
    for name in ("localhost", *client_names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, "broker test CA", key.public_key(), ca_key, False,
                     ["localhost"] if name == "localhost" else ())
        pem = (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
               + cert.public_bytes(serialization.Encoding.PEM))
        path = tmp / f"{name}.pem"
        path.write_bytes(pem)
        paths[name], pems[name] = str(path), pem
    pki = PKI(str(ca_file), paths.pop("localhost"), ssl.PrivateCertificate.loadPEM(pems["localhost"]))
    return pki, paths
