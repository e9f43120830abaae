#!/usr/bin/env python3
"""Recomputes the device-certificate, device-key-transport, device-record (format 2) and
hello (v2) vectors independently of the Rust code, with the `cryptography` package
(OpenSSL): ed25519, X25519, HKDF-SHA256, ChaCha20-Poly1305, HMAC-SHA256.

    python3 protocol/vectors/make_trust_vectors.py          # prints what differs, exit 1 if any
    python3 protocol/vectors/make_trust_vectors.py --write  # rewrites the .hex files

The inputs are the ones the Rust tests use (certificate::tests::body and authority,
device_key_transport::tests::fixed_vector, device_record::tests::sample, hello::tests::info).
"""
import hashlib
import hmac
import pathlib
import struct
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
HERE = pathlib.Path(__file__).parent


def hkdf(ikm, salt, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()


def certificate():
    authority = Ed25519PrivateKey.from_private_bytes(bytes([0x31] * 32))
    public = authority.public_key().public_bytes(*RAW)
    signed = (
        struct.pack("<IHHI", 0x43444746, 1, 0, 7)
        + bytes([0x11] * 16)
        + sha256(b"flashgate-device-key-commitment-v1", bytes([0x22] * 32))
        + sha256(b"order-1")[:16]
        + struct.pack("<IQ", 3, 1_700_000_000_000)
        + sha256(public)[:8]
    )
    assert len(signed) == 96
    return signed + authority.sign(b"flashgate-device-cert-v1" + signed)


def sealed_device_key(cert):
    loader = X25519PrivateKey.from_private_bytes(bytes([0x44] * 32))
    eph = X25519PrivateKey.from_private_bytes(bytes([0x55] * 32))
    loader_pub = loader.public_key().public_bytes(*RAW)
    eph_pub = eph.public_key().public_bytes(*RAW)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(loader_pub))
    k = hkdf(shared, b"flashgate-device-key-transport-v1", eph_pub + loader_pub)
    aad = b"FGDK" + bytes([0x11] * 16) + sha256(cert)
    return eph_pub + ChaCha20Poly1305(k).encrypt(bytes(12), bytes([0x22] * 32), aad)


def device_record(cert):
    config = (
        bytes([1] * 16)
        + struct.pack("<I", 42)
        + bytes([2] * 32)
        + bytes([5] * 32)
        + struct.pack("<II", 1, 0)
    )
    body = (
        struct.pack("<II", 0x52444746, 2)
        + config
        + bytes([3] * 32)
        + struct.pack("<II", 5, 1234)
        + bytes([4] * 32)
        + cert
    )
    return body + sha256(body)[:16]


def hello_response():
    key, challenge = bytes([1] * 32), bytes([2] * 32)
    body = (
        bytes([7] * 16)
        + bytes([7] * 16)
        + struct.pack("<IIB3xII", 3, 2, 0, 0, 0x0401)
    )
    k = hkdf(key, b"flashgate-hello-v2", b"hello-proof")
    mac = hmac.new(k, b"flashgate-hello-v2" + challenge + body, hashlib.sha256).digest()
    return body + mac


def main():
    cert = certificate()
    vectors = {
        "device_certificate.hex": cert,
        "sealed_device_key.hex": sealed_device_key(cert),
        "device_record.hex": device_record(cert),
        "hello_response.hex": hello_response(),
    }
    differ = False
    for name, value in vectors.items():
        path = HERE / name
        text = value.hex()
        if "--write" in sys.argv:
            path.write_text(text + "\n")
        elif not path.exists() or path.read_text().strip() != text:
            print(f"{name}: differs (expected {text})")
            differ = True
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
