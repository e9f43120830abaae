#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/<target>/, from the protocol's test vectors
(protocol/vectors/*.hex: real encodings the unit tests pin) and a few well-formed host-side
inputs (GDB packets, journal lines, a store log, auth headers). Run it again after a wire format
changes: `python3 fuzz/make_corpus.py`. Seeds are small on purpose; libFuzzer finds the rest.
"""

import hashlib
import json
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent
VECTORS = ROOT.parent / "protocol" / "vectors"
SIGNED_HEADER_LEN = 128
ENVELOPE_LEN = 212


def vector(name):
    return bytes.fromhex((VECTORS / f"{name}.hex").read_text().strip())


def frame(msg_type, payload):
    """A UART frame: sync, type, len u16le, payload, CRC-32/ISO-HDLC of the body."""
    body = bytes([msg_type]) + struct.pack("<H", len(payload)) + payload
    return b"\xf7\x47" + body + struct.pack("<I", zlib.crc32(body))


def body(msg_type, payload=b""):
    """A UART message's Codec encoding (type | len | payload), which session targets frame."""
    return bytes([msg_type]) + struct.pack("<H", len(payload)) + payload


def messages(*items):
    """The session-input format of fuzz/src/lib.rs: mode u8 | len u16le | bytes."""
    return b"".join(bytes([mode]) + struct.pack("<H", len(b)) + b for mode, b in items)


def gdb(payload):
    return b"$" + payload + b"#" + b"%02x" % (sum(payload) & 0xFF)


def store_record(revision, puts):
    payload = struct.pack("<QI", revision, len(puts))
    for key, value in puts:
        payload += b"\x01" + struct.pack("<I", len(key)) + key + struct.pack("<I", len(value)) + value
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


signed_image = vector("signed_image")
package = vector("update_package")
envelope, chunk1 = package[:ENVELOPE_LEN], package[ENVELOPE_LEN:]
hello_response = vector("hello_response")
status_receipt = vector("status_receipt")
challenge = bytes([7] * 32)

HELLO, STATUS, UPDATE_BEGIN, UPDATE_CHUNK, UPDATE_FINISH = 0x01, 0x14, 0x10, 0x11, 0x12
OS_STATUS, APP_PACKAGE_BEGIN, APP_COMMIT, DATA_EMIT = 0x33, 0x45, 0x42, 0x31
HELLO_RESPONSE, STATUS_RECEIPT, UPDATE_READY, BOOT_BANNER, DATA_RECORD = 0x81, 0x95, 0x90, 0x82, 0x30

seeds = {
    "codec_boot_state": [vector("boot_state_slot")[:64]],
    "codec_trust_anchors": [vector("trust_anchors")],
    "codec_counter_state": [struct.pack("<II", 1, 64)],
    "codec_app_header": [struct.pack("<I", 0x0020_0211)],
    "codec_device_record": [bytes(200)],
    "codec_mailbox_header": [b"FGMB" + bytes(28)],
    "codec_loader_hello": [bytes(80)],
    "codec_param_block": [bytes(48)],
    "codec_loader_image_header": [bytes(12)],
    "codec_station_message": [
        b"\x01" + vector("transcript_hash"),
        b"\x03" + signed_image[:SIGNED_HEADER_LEN],
        b"\x04" + struct.pack("<I", 0) + b"body",
        b"\x05",
    ],
    "codec_target_reply": [b"\x81" + struct.pack("<II", 1, 4)],
    "uart_request": [body(HELLO, challenge), body(UPDATE_BEGIN, envelope), body(OS_STATUS)],
    "uart_device_message": [
        body(HELLO_RESPONSE, hello_response),
        body(STATUS_RECEIPT, status_receipt),
        body(UPDATE_READY, struct.pack("<II", 0, 2)),
    ],
    "uart_frames": [
        b"\x40" + frame(HELLO, challenge) + frame(HELLO_RESPONSE, hello_response),
        b"\x05garbage\xf7\xf7\x47" + frame(STATUS_RECEIPT, status_receipt),
    ],
    "bootloader_service": [
        messages((1, body(HELLO, challenge)), (1, body(UPDATE_BEGIN, envelope)),
                 (1, body(UPDATE_CHUNK, struct.pack("<I", 1) + chunk1)), (1, body(UPDATE_FINISH))),
        messages((1, body(STATUS, challenge)), (0, frame(HELLO, challenge)[:-1] + b"\x00")),
    ],
    "os_service": [
        messages((1, body(HELLO, challenge)), (1, body(OS_STATUS)), (1, body(DATA_EMIT, b"\x02"))),
        messages((1, body(APP_PACKAGE_BEGIN, vector("update_package")[:228])), (1, body(APP_COMMIT))),
    ],
    "update_session": [
        messages((0, envelope), (1, struct.pack("<I", 1) + chunk1), (2, b""), (3, b"")),
    ],
    "update_envelope": [envelope],
    "image_header": [signed_image],
    # An image the target seals into a package for the device itself (mode 0), a chunk, a commit.
    "app_installer": [messages((0, signed_image),
                               (1, struct.pack("<I", 0) + signed_image[SIGNED_HEADER_LEN:]), (2, b""))],
    "loader_session": [
        messages((2, b""), (3, b""), (1, b"\x03" + signed_image[:SIGNED_HEADER_LEN]),
                 (1, b"\x04" + struct.pack("<I", 0) + signed_image[SIGNED_HEADER_LEN:]), (1, b"\x05")),
        messages((0, vector("sealed_frame"))),
    ],
    "sealed_frame": [b"\x01" + vector("sealed_frame")],
    "data_record": [vector("data_record")],
    "hello_receipt": [b"\x00" + hello_response, b"\x01" + status_receipt],
    "host_link": [
        b"\x00" + b"\x40" + frame(HELLO_RESPONSE, hello_response),
        b"\x01" + b"\x40" + frame(STATUS_RECEIPT, status_receipt),
        b"\x04" + b"\x20" + frame(BOOT_BANNER, b"flashgate demo os v1"),
        b"\x05" + b"\x40" + frame(DATA_RECORD, vector("data_record")),
    ],
    "gdb_packets": [
        b"\x05+" + gdb(b"OK") + b"\x10" + gdb(b"T05thread:01;"),
        b"\x3f" + gdb(b"0* ") + b"-" + gdb(b"}]}\x03"),
    ],
    "gdb_replies": [
        b"T05thread:01;",
        b"PacketSize=4000;qXfer:features:read+;vContSupported+;QStartNoAckMode+",
        b"E01",
        b"00112233445566778899aabbccddeeff",
    ],
    "journal": [
        "\n".join(json.dumps(r) for r in [
            {"record": "lease_acquired", "lease_id": "l-1", "signed_lease": "0a00", "at_ms": 1},
            {"record": "install_reported", "lease_id": "l-1", "serial": "aa" * 16},
            {"record": "target_failed", "probe": "bay-1", "reason": "no target", "at_ms": 2},
            {"record": "lease_closed", "lease_id": "l-1", "reason": "used up"},
        ]).encode() + b"\n",
    ],
    "embedded_store_log": [
        store_record(1, [(b"products/7", b"{}")]) + store_record(2, [(b"orders/1", b"{}")])
        + store_record(2, []),
    ],
    "auth_metadata": [
        b"authorization:Bearer t0ken\n",
        b"x-flashgate-station:st-0123456789abcdef\nx-flashgate-timestamp:1700000000000\n"
        b"x-flashgate-nonce:" + b"00" * 16 + b"\nx-flashgate-signature:" + b"11" * 64 + b"\n",
    ],
}

targets = {p.stem for p in (ROOT / "fuzz_targets").glob("*.rs")}
missing = targets - seeds.keys()
assert not missing, f"no seeds for {sorted(missing)}"
for target, inputs in seeds.items():
    assert target in targets, f"seeds for an unknown target {target}"
    out = ROOT / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        old.unlink()
    for data in inputs:
        (out / hashlib.sha1(data).hexdigest()).write_bytes(data)
print(f"wrote seeds for {len(seeds)} targets under {ROOT / 'corpus'}")
