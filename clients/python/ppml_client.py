#!/usr/bin/env python3
"""ppml-serving client for Python: attest the enclave, then run encrypted
KServe v2 inferences against it.

    from ppml_client import PPMLClient
    client = PPMLClient("https://127.0.0.1:8443", "platform.pub.pem",
                        measurement="9f2c...", ca_cert="ca.pem")
    quote = client.attest("fashion")            # verified quote fields
    out = client.infer("fashion", {"input": x})  # {"logits": ndarray}

The same protocol as the C++ client (client/client.h), byte for byte:

- Attestation (enclave_sim/attestation.h): GET /v2/attestation?nonce=HEX
  returns {"quote": {...}, "enclave_public_key", "nonce"}. The quote body is
  "PPQT" || u32 version || measurement (32) || signer id (32) ||
  report data (64) || u64 timestamp (big-endian), signed with
  ECDSA-P256-SHA256 (DER) by the platform key the client pins;
  report data = SHA-512(enclave X25519 key || nonce). Checked in the C++
  order: our nonce, version, signature, measurement, report data, age,
  not from the future.
- HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
  AES-256-GCM, written here from the RFC on top of python3-cryptography's
  X25519, HMAC/HKDF-Expand and AESGCM (Debian has no pyhpke).
- EHBP (common/ehbp.h): header Ehbp-Encapsulated-Key (hex enc, info
  "ehbp request"), body = frames of u32 BE length || ctx.Seal("", chunk)
  (64 KiB chunks; an empty body is one sealed empty chunk); the reply
  (header Ehbp-Response-Nonce, 32 bytes) uses
  secret = Export("ehbp response", 32), prk = HKDF-Extract(enc || nonce,
  secret), key = Expand(prk, "key", 32), nonce = Expand(prk, "nonce", 12),
  frame i sealed under nonce XOR i (big-endian, last 8 bytes).
- KServe v2 JSON, with the binary tensor extension when binary=True
  (Inference-Header-Content-Length carries the JSON length).

Debian packages: python3-cryptography, python3-numpy, python3-requests
(requests only for PPMLClient's HTTP; the crypto and codec functions work
without it). Nothing here logs keys or plaintext.
"""

import hashlib
import hmac
import json
import os
import secrets
import struct
import sys
import time

try:
    import numpy as np
except ImportError as error:  # pragma: no cover - reported to the user
    raise ImportError("ppml_client needs numpy: apt-get install python3-numpy") from error
try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
except ImportError as error:  # pragma: no cover - reported to the user
    raise ImportError("ppml_client needs cryptography: apt-get install python3-cryptography") from error

__all__ = [
    "PPMLClient", "PPMLError", "AttestationError",
    "setup_base_s", "setup_base_r", "encrypt_request", "decrypt_request", "encrypt_response",
    "decrypt_response", "verify_attestation_document", "encode_infer_request", "decode_infer_response",
]


class PPMLError(Exception):
    """A failed step. `code` names the kind (as the C++ StatusCode does):
    InvalidArgument, PermissionDenied, DeadlineExceeded, DataLoss, NotFound,
    FailedPrecondition, ResourceExhausted, Unavailable, Unsupported, Internal.
    `http_status` is set for HTTP error replies."""

    def __init__(self, message, code="Internal", http_status=None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class AttestationError(PPMLError):
    """The enclave's quote was rejected; the message says why."""


# ---- HPKE (RFC 9180), base mode ---------------------------------------------------

KEM_ID = 0x0020  # DHKEM(X25519, HKDF-SHA256)
KDF_ID = 0x0001  # HKDF-SHA256
AEAD_ID = 0x0002  # AES-256-GCM
N_SECRET = 32
N_ENC = 32
N_K = 32
N_N = 12
N_H = 32
TAG_LENGTH = 16
KEM_SUITE_ID = b"KEM" + struct.pack(">H", KEM_ID)
HPKE_SUITE_ID = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def _extract(salt, ikm):
    """HKDF-Extract with SHA-256 (RFC 5869): HMAC(salt or HashLen zeros, ikm)."""
    return hmac.new(salt if salt else b"\0" * N_H, ikm, hashlib.sha256).digest()


def _expand(prk, info, length):
    return HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def _labeled_extract(suite_id, salt, label, ikm):
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id, prk, label, info, length):
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    return _expand(prk, labeled_info, length)


def _raw_public(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _dh(private_key, public_bytes):
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(bytes(public_bytes)))
    except ValueError as error:  # all-zero shared secret: a low-order point
        raise PPMLError("X25519: invalid (low-order) public key", "InvalidArgument") from error


def _extract_and_expand(dh, kem_context):
    eae_prk = _labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    return _labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_SECRET)


class _Context:
    """The key schedule's outputs and the sequence number (RFC 9180 §5)."""

    def __init__(self, shared_secret, info):
        psk_id_hash = _labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
        info_hash = _labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info)
        key_schedule_context = b"\x00" + psk_id_hash + info_hash  # mode_base
        secret = _labeled_extract(HPKE_SUITE_ID, shared_secret, b"secret", b"")
        self._key = _labeled_expand(HPKE_SUITE_ID, secret, b"key", key_schedule_context, N_K)
        self.base_nonce = _labeled_expand(HPKE_SUITE_ID, secret, b"base_nonce", key_schedule_context, N_N)
        self._exporter_secret = _labeled_expand(HPKE_SUITE_ID, secret, b"exp", key_schedule_context, N_H)
        self._aead = AESGCM(self._key)
        self.sequence = 0

    def _nonce(self):
        if self.sequence >= 1 << 64:
            raise PPMLError("HPKE sequence number exhausted", "ResourceExhausted")
        seq = self.sequence.to_bytes(N_N, "big")
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq))

    def export(self, exporter_context, length):
        return _labeled_expand(HPKE_SUITE_ID, self._exporter_secret, b"sec", exporter_context, length)


class SenderContext(_Context):
    def seal(self, aad, plaintext):
        ciphertext = self._aead.encrypt(self._nonce(), bytes(plaintext), bytes(aad))
        self.sequence += 1
        return ciphertext


class ReceiverContext(_Context):
    def open(self, aad, ciphertext):
        try:
            plaintext = self._aead.decrypt(self._nonce(), bytes(ciphertext), bytes(aad))
        except InvalidTag as error:
            raise PPMLError("HPKE: ciphertext does not authenticate", "DataLoss") from error
        self.sequence += 1
        return plaintext


def setup_base_s(recipient_public_key, info, ephemeral_private_key=None):
    """RFC 9180 SetupBaseS: (enc, SenderContext). `ephemeral_private_key`
    (32 bytes) is for test vectors only; None draws a fresh one."""
    if len(recipient_public_key) != N_ENC:
        raise PPMLError("HPKE: recipient public key must be 32 bytes", "InvalidArgument")
    if ephemeral_private_key is None:
        sk_e = X25519PrivateKey.generate()
    else:
        sk_e = X25519PrivateKey.from_private_bytes(bytes(ephemeral_private_key))
    enc = _raw_public(sk_e.public_key())
    dh = _dh(sk_e, recipient_public_key)
    shared_secret = _extract_and_expand(dh, enc + bytes(recipient_public_key))
    return enc, SenderContext(shared_secret, bytes(info))


def setup_base_r(enc, recipient_private_key, info):
    """RFC 9180 SetupBaseR: a ReceiverContext."""
    if len(enc) != N_ENC:
        raise PPMLError("HPKE: enc must be 32 bytes", "InvalidArgument")
    sk_r = X25519PrivateKey.from_private_bytes(bytes(recipient_private_key))
    dh = _dh(sk_r, enc)
    shared_secret = _extract_and_expand(dh, bytes(enc) + _raw_public(sk_r.public_key()))
    return ReceiverContext(shared_secret, bytes(info))


# ---- EHBP framing -------------------------------------------------------------------

ENCAPSULATED_KEY_HEADER = "Ehbp-Encapsulated-Key"
RESPONSE_NONCE_HEADER = "Ehbp-Response-Nonce"
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
REQUEST_INFO = b"ehbp request"
RESPONSE_EXPORT_LABEL = b"ehbp response"
RESPONSE_NONCE_LENGTH = 32
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_FRAME_LENGTH = 16 * 1024 * 1024


class ClientState:
    """What the client keeps to decrypt the reply."""

    def __init__(self, enc, context):
        self.enc = enc
        self.context = context


class ServerState:
    def __init__(self, enc, context):
        self.enc = enc
        self.context = context


def _check_chunk_size(chunk_size):
    if not 1 <= chunk_size <= MAX_FRAME_LENGTH - TAG_LENGTH:
        raise PPMLError("EHBP chunk size %d is outside 1..%d" % (chunk_size, MAX_FRAME_LENGTH - TAG_LENGTH),
                        "InvalidArgument")


def _seal_frames(plaintext, chunk_size, seal_empty, seal):
    if not plaintext and not seal_empty:
        return b""
    out = bytearray()
    offset = 0
    while True:
        chunk = plaintext[offset:offset + chunk_size]
        ciphertext = seal(chunk)
        out += struct.pack(">I", len(ciphertext)) + ciphertext
        offset += len(chunk)
        if offset >= len(plaintext):
            return bytes(out)


def _open_frames(body, what, open_frame):
    """Calls open_frame(index, ciphertext) on each non-empty frame; returns the
    plaintext and the number of non-empty frames."""
    body = memoryview(bytes(body))
    offset = 0
    index = 0
    opened = 0
    out = bytearray()
    while offset < len(body):
        where = "%s frame %d at byte %d" % (what, index, offset)
        if len(body) - offset < 4:
            raise PPMLError(where + ": truncated length prefix", "DataLoss")
        (length,) = struct.unpack(">I", body[offset:offset + 4])
        offset += 4
        if length != 0:
            if length < TAG_LENGTH or length > MAX_FRAME_LENGTH:
                raise PPMLError(where + ": bad length prefix %d" % length, "InvalidArgument")
            if len(body) - offset < length:
                raise PPMLError(where + ": truncated chunk", "DataLoss")
            try:
                out += open_frame(opened, bytes(body[offset:offset + length]))
            except (InvalidTag, PPMLError) as error:
                raise PPMLError(where + ": failed to authenticate (tampered, reordered or dropped frame, "
                                "or wrong key)", "DataLoss") from error
            offset += length
            opened += 1
        index += 1
    return bytes(out), opened


def _decode_hex_header(name, value, length):
    if value is None or len(value) != 2 * length:
        raise PPMLError("%s: expected %d hex characters" % (name, 2 * length), "InvalidArgument")
    try:
        return bytes.fromhex(value)
    except ValueError as error:
        raise PPMLError("%s: not hex" % name, "InvalidArgument") from error


def encrypt_request(recipient_public_key, plaintext, chunk_size=DEFAULT_CHUNK_SIZE, ephemeral_private_key=None):
    """EHBP request: (Ehbp-Encapsulated-Key value, body, ClientState)."""
    _check_chunk_size(chunk_size)
    enc, context = setup_base_s(recipient_public_key, REQUEST_INFO, ephemeral_private_key)
    body = _seal_frames(bytes(plaintext), chunk_size, True, lambda chunk: context.seal(b"", chunk))
    return enc.hex(), body, ClientState(enc, context)


def decrypt_request(encapsulated_key_header_value, body, recipient_private_key):
    """The enclave's side (tests, tools): (plaintext, ServerState)."""
    enc = _decode_hex_header(ENCAPSULATED_KEY_HEADER, encapsulated_key_header_value, N_ENC)
    context = setup_base_r(enc, recipient_private_key, REQUEST_INFO)
    plaintext, frames = _open_frames(body, "EHBP request", lambda _i, ct: context.open(b"", ct))
    if frames == 0:
        raise PPMLError("EHBP request: body has no non-empty frame", "DataLoss")
    return plaintext, ServerState(enc, context)


def _response_keys(context, enc, response_nonce):
    secret = context.export(RESPONSE_EXPORT_LABEL, max(N_N, N_K))
    prk = _extract(bytes(enc) + bytes(response_nonce), secret)
    return _expand(prk, b"key", N_K), _expand(prk, b"nonce", N_N)


def _chunk_nonce(base, seq):
    return base[:-8] + bytes(a ^ b for a, b in zip(base[-8:], seq.to_bytes(8, "big")))


def encrypt_response(server_state, plaintext, chunk_size=DEFAULT_CHUNK_SIZE, response_nonce=None):
    """EHBP reply: (Ehbp-Response-Nonce value, body). `response_nonce` (32
    bytes) is for test vectors only."""
    _check_chunk_size(chunk_size)
    if response_nonce is None:
        response_nonce = secrets.token_bytes(RESPONSE_NONCE_LENGTH)
    if len(response_nonce) != RESPONSE_NONCE_LENGTH:
        raise PPMLError("EHBP response nonce must be 32 bytes", "InvalidArgument")
    key, nonce = _response_keys(server_state.context, server_state.enc, response_nonce)
    aead = AESGCM(key)
    counter = [0]

    def seal(chunk):
        ciphertext = aead.encrypt(_chunk_nonce(nonce, counter[0]), chunk, b"")
        counter[0] += 1
        return ciphertext

    return bytes(response_nonce).hex(), _seal_frames(bytes(plaintext), chunk_size, False, seal)


def decrypt_response(client_state, response_nonce_header_value, body):
    """The reply's plaintext. PPMLError DataLoss when it does not authenticate."""
    response_nonce = _decode_hex_header(RESPONSE_NONCE_HEADER, response_nonce_header_value, RESPONSE_NONCE_LENGTH)
    key, nonce = _response_keys(client_state.context, client_state.enc, response_nonce)
    aead = AESGCM(key)
    plaintext, _ = _open_frames(body, "EHBP response",
                                lambda index, ct: aead.decrypt(_chunk_nonce(nonce, index), ct, b""))
    return plaintext


# ---- Attestation ----------------------------------------------------------------------

QUOTE_VERSION = 1
MIN_NONCE_LENGTH = 16
MAX_NONCE_LENGTH = 64
MAX_CLOCK_SKEW_SECONDS = 60


def _hex_field(obj, field, length, exact=True, what="quote JSON"):
    value = obj.get(field) if isinstance(obj, dict) else None
    if value is None:
        raise PPMLError('%s: field "%s": missing' % (what, field), "InvalidArgument")
    if not isinstance(value, str):
        raise PPMLError('%s: field "%s": not a string' % (what, field), "InvalidArgument")
    try:
        data = bytes.fromhex(value)
    except ValueError as error:
        raise PPMLError('%s: field "%s": not hex' % (what, field), "InvalidArgument") from error
    if (len(data) != length) if exact else (len(data) == 0 or len(data) > length):
        raise PPMLError('%s: field "%s": %d bytes, expected %s%d' % (what, field, len(data), "" if exact else "1 to ",
                                                                       length), "InvalidArgument")
    return data


def parse_attestation_document(document):
    """The document's fields as bytes/ints; its shape is checked as
    AttestationDocumentFromJson does (not its truth: verify it)."""
    if isinstance(document, (bytes, str)):
        try:
            document = json.loads(document)
        except ValueError as error:
            raise PPMLError("attestation document: not valid JSON", "InvalidArgument") from error
    if not isinstance(document, dict) or not isinstance(document.get("quote"), dict):
        raise PPMLError('attestation document: field "quote": missing or not an object', "InvalidArgument")
    quote = document["quote"]
    version = quote.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise PPMLError('attestation document: quote JSON: field "version": not a non-negative integer',
                        "InvalidArgument")
    if version != QUOTE_VERSION:
        raise PPMLError("quote version %d is not supported (expected %d)" % (version, QUOTE_VERSION), "Unsupported")
    timestamp = quote.get("timestamp_unix")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise PPMLError('attestation document: quote JSON: field "timestamp_unix": not an integer', "InvalidArgument")
    parsed = {
        "version": version,
        "measurement": _hex_field(quote, "measurement", 32),
        "signer_id": _hex_field(quote, "signer_id", 32),
        "report_data": _hex_field(quote, "report_data", 64),
        "timestamp_unix": timestamp,
        "signature": _hex_field(quote, "signature", 72, exact=False),
        "enclave_public_key": _hex_field(document, "enclave_public_key", 32, what="attestation document"),
        "nonce": _hex_field(document, "nonce", MAX_NONCE_LENGTH, exact=False, what="attestation document"),
    }
    if len(parsed["nonce"]) < MIN_NONCE_LENGTH:
        raise PPMLError('attestation document: field "nonce": shorter than %d bytes' % MIN_NONCE_LENGTH,
                        "InvalidArgument")
    return parsed


def quote_body(parsed):
    """The 144 signed bytes (EncodeQuoteBody)."""
    return (b"PPQT" + struct.pack(">I", parsed["version"]) + parsed["measurement"] + parsed["signer_id"] +
            parsed["report_data"] + struct.pack(">Q", parsed["timestamp_unix"] & 0xFFFFFFFFFFFFFFFF))


def load_platform_public_key(key):
    """A P-256 public key from PEM bytes/text, a file path, or a key object."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        public = key
    else:
        if isinstance(key, str) and "-----BEGIN" not in key:
            try:
                with open(key, "rb") as f:
                    key = f.read()
            except OSError as error:
                raise PPMLError("platform public key %s: %s" % (key, error.strerror), "NotFound") from error
        if isinstance(key, str):
            key = key.encode()
        try:
            public = serialization.load_pem_public_key(key)
        except ValueError as error:
            raise PPMLError("platform public key: not a PEM public key", "InvalidArgument") from error
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise PPMLError("platform public key: not an ECDSA P-256 key", "InvalidArgument")
    return public


def verify_attestation_document(document, platform_public_key, expected_measurement=None, expected_nonce=None,
                                max_age_seconds=300, now=None):
    """VerifyAttestationDocument in Python: the parsed fields when every check
    passes, AttestationError (PermissionDenied, DeadlineExceeded, Unsupported)
    with the reason otherwise. `expected_measurement` (hex or bytes) None
    accepts any measurement (returned for pinning); `expected_nonce` is the
    challenge this client sent."""
    key = load_platform_public_key(platform_public_key)
    try:
        parsed = parse_attestation_document(document)
    except PPMLError as error:
        raise AttestationError(str(error), error.code) from error
    if expected_nonce is not None and not hmac.compare_digest(parsed["nonce"], bytes(expected_nonce)):
        raise AttestationError("the attestation document answers another nonce than the one sent (a replayed "
                               "document)", "PermissionDenied")
    try:
        key.verify(parsed["signature"], quote_body(parsed), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise AttestationError("bad signature: the quote does not verify under the pinned platform key (another "
                               "platform, or a field was altered)", "PermissionDenied") from error
    if expected_measurement is not None:
        expected = bytes.fromhex(expected_measurement) if isinstance(expected_measurement, str) \
            else bytes(expected_measurement)
        if len(expected) != 32:
            raise PPMLError("expected measurement must be 32 bytes (64 hex)", "InvalidArgument")
        if not hmac.compare_digest(parsed["measurement"], expected):
            raise AttestationError("wrong measurement: the quote attests enclave %s, expected %s"
                                   % (parsed["measurement"].hex(), expected.hex()), "PermissionDenied")
    report = hashlib.sha512(parsed["enclave_public_key"] + parsed["nonce"]).digest()
    if not hmac.compare_digest(parsed["report_data"], report):
        raise AttestationError("report data does not bind this enclave key and nonce (a stale or replayed nonce, "
                               "or a quote for another key)", "PermissionDenied")
    now = int(time.time()) if now is None else int(now)
    stamped = parsed["timestamp_unix"]
    if stamped < now and now - stamped > max_age_seconds:
        raise AttestationError("quote too old: stamped %d, now %d, max age %d s" % (stamped, now, max_age_seconds),
                               "DeadlineExceeded")
    if stamped > now and stamped - now > MAX_CLOCK_SKEW_SECONDS:
        raise AttestationError("quote from the future: stamped %d, now %d" % (stamped, now), "PermissionDenied")
    return parsed


# ---- KServe v2 --------------------------------------------------------------------------

_DATATYPES = {
    "FP32": np.dtype("<f4"), "UINT8": np.dtype("u1"), "INT8": np.dtype("i1"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
}


def _datatype_of(array, name):
    for datatype, dtype in _DATATYPES.items():
        if array.dtype == dtype or array.dtype == dtype.newbyteorder("="):
            return datatype
    raise PPMLError('input "%s": dtype %s is not supported (FP32, UINT8, INT8, INT32, INT64); use astype'
                    % (name, array.dtype), "Unsupported")


def encode_infer_request(inputs, binary=False, outputs=None, binary_output=False, request_id=None):
    """A KServe v2 request body: (bytes, json_length or None). `inputs` maps
    names to arrays (an ordered dict keeps their order); with `binary` every
    input travels as binary tensor data; `outputs` lists output names to ask
    for (None: all); `binary_output` asks for outputs as binary data."""
    request = {}
    if request_id:
        request["id"] = request_id
    if binary_output:
        request["parameters"] = {"binary_data_output": True}
    entries, blobs = [], []
    for name, value in inputs.items():
        array = np.ascontiguousarray(value)
        datatype = _datatype_of(array, name)
        entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            data = array.astype(_DATATYPES[datatype], copy=False).tobytes(order="C")
            entry["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            if datatype == "FP32" and not np.all(np.isfinite(array)):
                raise PPMLError('input "%s": NaN or infinity cannot be sent as JSON; use binary=True' % name,
                                "InvalidArgument")
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    request["inputs"] = entries
    if outputs:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": bool(binary_output)}} for n in outputs]
    text = json.dumps(request, separators=(",", ":"), allow_nan=False).encode()
    if not binary:
        return text, None
    return text + b"".join(blobs), len(text)


def decode_infer_response(body, json_length=None, expected_model=None):
    """{output name: ndarray} from a KServe v2 response body (JSON, or JSON
    and binary data with `json_length` its JSON length). With
    `expected_model`, the body must name that model: the enclave names the
    model it ran inside the encryption, so a request routed to another
    model's enclave is refused."""
    body = bytes(body)
    if json_length is None:
        json_part, rest = body, b""
    else:
        if json_length > len(body):
            raise PPMLError("inference response: JSON length %d is past the body (%d bytes)"
                            % (json_length, len(body)), "InvalidArgument")
        json_part, rest = body[:json_length], body[json_length:]
    try:
        response = json.loads(json_part)
    except ValueError as error:
        raise PPMLError("inference response: not valid JSON", "InvalidArgument") from error
    if not isinstance(response, dict):
        raise PPMLError("inference response: not a JSON object", "InvalidArgument")
    if "error" in response:
        raise PPMLError("inference response: server answered an error: %s" % response["error"], "InvalidArgument")
    if expected_model is not None and response.get("model_name") != expected_model:
        raise PPMLError("inference response: the encrypted reply was computed by model %r, not %r: the request "
                        "was routed to another model's enclave" % (response.get("model_name"), expected_model),
                        "DataLoss")
    results = {}
    offset = 0
    for entry in response.get("outputs", []):
        name = entry.get("name")
        datatype = entry.get("datatype")
        if datatype not in _DATATYPES:
            raise PPMLError('output "%s": datatype %s is not supported' % (name, datatype), "Unsupported")
        dtype = _DATATYPES[datatype]
        shape = tuple(int(d) for d in entry.get("shape", []))
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if json_length is None:
                raise PPMLError('output "%s": binary data without %s' % (name, HEADER_LENGTH_HEADER),
                                "InvalidArgument")
            if size != count * dtype.itemsize or offset + size > len(rest):
                raise PPMLError('output "%s": binary_data_size %d does not fit its shape or the body' % (name, size),
                                "InvalidArgument")
            results[name] = np.frombuffer(rest, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
            offset += size
        else:
            data = np.array(entry.get("data", []), dtype=np.float64 if datatype == "FP32" else np.int64)
            if data.size != count:
                raise PPMLError('output "%s": %d values for shape %s' % (name, data.size, list(shape)),
                                "InvalidArgument")
            results[name] = data.astype(dtype).reshape(shape)
    if offset != len(rest):
        raise PPMLError("inference response: %d bytes of binary data not claimed by any output"
                        % (len(rest) - offset), "InvalidArgument")
    return results


# ---- The client -----------------------------------------------------------------------------

_HTTP_CODES = {400: "InvalidArgument", 401: "PermissionDenied", 403: "PermissionDenied", 404: "NotFound",
               408: "DeadlineExceeded", 409: "FailedPrecondition", 413: "ResourceExhausted",
               429: "ResourceExhausted", 500: "Internal", 501: "Unsupported", 504: "DeadlineExceeded"}


def _server_message(body):
    try:
        message = json.loads(body).get("error")
        if isinstance(message, str):
            return message[:500]
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    text = bytes(body[:500]).decode("ascii", "replace")
    return "".join(c if " " <= c < "\x7f" else "?" for c in text) or "(empty body)"


def _http_error(what, status, body, encrypted=False):
    code = _HTTP_CODES.get(status, "Unavailable" if status >= 500 else "FailedPrecondition")
    return PPMLError("%s: HTTP %d%s: %s" % (what, status, " (encrypted error from the enclave)" if encrypted else "",
                                             _server_message(body)), code, status)


class PPMLClient:
    """Attests the enclave behind `url`, then encrypts inferences to it.

    url             https://HOST:PORT of the front-end (http:// for development)
    platform_pubkey the pinned platform (quoting) public key: a PEM file path,
                    PEM text/bytes, or a cryptography EC public key
    measurement     64 hex digits to require; None accepts any (attest()
                    returns it so it can be pinned)
    ca_cert         PEM CA file of the server certificate (None: system CAs)
    client_cert     optional (cert, key) file pair for mutual TLS

    One instance per thread (it keeps one requests.Session).
    """

    def __init__(self, url, platform_pubkey, measurement=None, ca_cert=None, client_cert=None, timeout=120.0,
                 max_quote_age=300):
        try:
            import requests  # noqa: F401 - imported here so the codecs work without it
        except ImportError as error:
            raise ImportError("PPMLClient needs requests: apt-get install python3-requests") from error
        self._requests = requests
        self.url = url.rstrip("/")
        if not (self.url.startswith("https://") or self.url.startswith("http://")):
            raise PPMLError('URL "%s": expected https://HOST:PORT' % url, "InvalidArgument")
        self._platform_key = load_platform_public_key(platform_pubkey)
        if measurement is not None:
            try:
                if len(bytes.fromhex(measurement)) != 32:
                    raise ValueError
            except ValueError as error:
                raise PPMLError("measurement: expected 64 hex digits", "InvalidArgument") from error
        self.measurement = measurement.lower() if measurement else None
        self.timeout = timeout
        self.max_quote_age = max_quote_age
        self._session = requests.Session()
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE override a Session's own `verify`.
        self._verify = ca_cert if ca_cert else True
        self._cert = client_cert
        self._attested = {}  # model -> parsed attestation
        self.last_request_id = None

    def _request(self, method, path, **kwargs):
        try:
            return self._session.request(method, self.url + path, timeout=self.timeout, verify=self._verify,
                                         cert=self._cert, **kwargs)
        except self._requests.exceptions.SSLError as error:
            raise PPMLError("%s: TLS failed (certificate verify failed?): %s" % (self.url, error),
                            "PermissionDenied") from error
        except self._requests.exceptions.Timeout as error:
            raise PPMLError("%s: %s %s timed out" % (self.url, method, path), "DeadlineExceeded") from error
        except self._requests.exceptions.RequestException as error:
            raise PPMLError("%s: %s %s failed: %s" % (self.url, method, path, error), "Unavailable") from error

    def attest(self, model=None):
        """Fetches a quote for a fresh 32-byte nonce and verifies it. Returns
        {"measurement", "measurement_pinned", "signer_id", "timestamp_unix",
        "enclave_public_key", "nonce"} (hex strings); AttestationError when
        rejected."""
        nonce = secrets.token_bytes(32)
        params = {"nonce": nonce.hex()}
        if model:
            params["model"] = model
        what = "%s: GET /v2/attestation" % self.url
        reply = self._request("GET", "/v2/attestation", params=params, headers={"Accept": "application/json"})
        if reply.status_code != 200:
            raise _http_error(what, reply.status_code, reply.content)
        try:
            parsed = verify_attestation_document(reply.content, self._platform_key, self.measurement, nonce,
                                                 self.max_quote_age)
        except AttestationError as error:
            raise AttestationError("%s: attestation rejected: %s" % (self.url, error), error.code) from error
        self._attested[model or ""] = parsed
        return {
            "measurement": parsed["measurement"].hex(),
            "measurement_pinned": self.measurement is not None,
            "signer_id": parsed["signer_id"].hex(),
            "timestamp_unix": parsed["timestamp_unix"],
            "enclave_public_key": parsed["enclave_public_key"].hex(),
            "nonce": parsed["nonce"].hex(),
        }

    def model_metadata(self, model):
        """GET /v2/models/{model} as a dict."""
        path = "/v2/models/%s" % self._quote(model)
        reply = self._request("GET", path, headers={"Accept": "application/json"})
        if reply.status_code != 200:
            raise _http_error("%s: GET %s" % (self.url, path), reply.status_code, reply.content)
        return reply.json()

    @staticmethod
    def _quote(text):
        from urllib.parse import quote
        return quote(text, safe="")

    def infer(self, model, inputs, binary=False, outputs=None):
        """Runs one inference: {input name: ndarray} -> {output name:
        ndarray}. Attests first when this model has no verified attestation
        yet (attest(model) renews it); encrypts only to the enclave key
        attested for this model."""
        body, json_length = encode_infer_request(inputs, binary=binary, outputs=outputs, binary_output=binary)
        return self.infer_body(model, body, json_length)

    def infer_body(self, model, body, json_length=None):
        """The same for a KServe v2 body encoded by the caller."""
        # Each model's enclave is attested for that model: the front-end
        # routes GET /v2/attestation?model= to the model's own workers.
        attested = self._attested.get(model)
        if attested is None:
            self.attest(model)
            attested = self._attested[model]
        enc, encrypted, state = encrypt_request(attested["enclave_public_key"], body)
        headers = {ENCAPSULATED_KEY_HEADER: enc, "Content-Type": "application/octet-stream",
                   "Accept": "application/octet-stream, application/json"}
        if json_length is not None:
            headers[HEADER_LENGTH_HEADER] = str(json_length)
        path = "/v2/models/%s/infer" % self._quote(model)
        what = "%s: POST %s" % (self.url, path)
        reply = self._request("POST", path, data=encrypted, headers=headers)
        self.last_request_id = reply.headers.get("X-Request-Id")
        nonce = reply.headers.get(RESPONSE_NONCE_HEADER)
        plaintext = None
        if nonce is not None:
            try:
                plaintext = decrypt_response(state, nonce, reply.content)
            except PPMLError as error:
                raise PPMLError("%s: HTTP %d: the reply does not decrypt under this request's response key: %s"
                                % (what, reply.status_code, error), "DataLoss", reply.status_code) from error
        if reply.status_code != 200:
            raise _http_error(what, reply.status_code, plaintext if plaintext is not None else reply.content,
                              encrypted=plaintext is not None)
        if plaintext is None:
            raise PPMLError("%s: HTTP 200 without an %s header: an unencrypted reply is refused"
                            % (what, RESPONSE_NONCE_HEADER), "PermissionDenied", 200)
        length_header = reply.headers.get(HEADER_LENGTH_HEADER)
        reply_json_length = None
        if length_header is not None:
            if not length_header.strip().isdigit():
                raise PPMLError("%s: bad %s" % (what, HEADER_LENGTH_HEADER), "DataLoss")
            reply_json_length = int(length_header)
        return decode_infer_response(plaintext, reply_json_length, expected_model=model)


def main(argv=None):
    """python3 ppml_client.py attest|infer --url URL --platform-pubkey PEM
    [--measurement HEX] [--ca PEM] [--model M] [--input x.npy --input-name N]
    [--binary] -- prints JSON on stdout; exit 1 on failure."""
    import argparse
    parser = argparse.ArgumentParser(description="ppml-serving Python client")
    parser.add_argument("command", choices=["attest", "infer"])
    parser.add_argument("--url", default=os.environ.get("PPML_URL"), required="PPML_URL" not in os.environ)
    parser.add_argument("--platform-pubkey", default=os.environ.get("PPML_PLATFORM_PUBKEY"),
                        required="PPML_PLATFORM_PUBKEY" not in os.environ)
    parser.add_argument("--measurement", default=os.environ.get("PPML_MEASUREMENT"))
    parser.add_argument("--ca", default=os.environ.get("PPML_CA"))
    parser.add_argument("--model")
    parser.add_argument("--input", help=".npy file for the model's first input")
    parser.add_argument("--input-name", help="input name (default: the model's first input)")
    parser.add_argument("--binary", action="store_true")
    args = parser.parse_args(argv)
    try:
        client = PPMLClient(args.url, args.platform_pubkey, args.measurement or None, args.ca)
        if args.command == "attest":
            print(json.dumps(client.attest(args.model)))
            return 0
        if not args.model or not args.input:
            parser.error("infer needs --model and --input")
        name = args.input_name or client.model_metadata(args.model)["inputs"][0]["name"]
        outputs = client.infer(args.model, {name: np.load(args.input)}, binary=args.binary)
        print(json.dumps({k: {"shape": list(v.shape), "datatype": str(v.dtype), "values": v.reshape(-1)[:10].tolist()}
                          for k, v in outputs.items()}))
        return 0
    except PPMLError as error:
        print("ppml_client: %s: %s" % (error.code, error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
