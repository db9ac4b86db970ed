#!/usr/bin/python3
"""The Python client (clients/python/ppml_client.py) against the C++ HPKE,
EHBP, KServe and attestation code, with no server in between.

    python_vectors_test.py --tool PATH/TO/ehbp_vector_tool

1. `ehbp_vector_tool vectors` prints requests encrypted by C++ with a fixed
   ephemeral key and replies encrypted with fixed nonces: Python must produce
   the same bytes (enc header and every frame) for the same inputs, decrypt
   both directions, and decode the KServe bodies.
2. An attestation document signed by C++ with a platform key made for the
   run: Python verifies it, and rejects each tampered variant for the same
   reason C++ would (bad signature, wrong measurement, another nonce, report
   data, too old, unsupported version, malformed).
3. Python encrypts KServe requests (JSON and binary, every datatype) with a
   fresh key; `ehbp_vector_tool roundtrip` decrypts, parses, echoes and
   encrypts the reply; Python decrypts it and gets its arrays back.

Fails (exit 1, never skips) when python3-cryptography or python3-numpy is
missing, naming the Debian package.
"""

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "clients", "python"))


def require_packages():
    missing = []
    try:
        import numpy  # noqa: F401
    except ImportError:
        missing.append("python3-numpy")
    try:
        import cryptography  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import x25519  # noqa: F401
    except ImportError:
        missing.append("python3-cryptography")
    if missing:
        print("client_python_vectors: FAIL: %s %s not installed for %s; install with `apt-get install %s` "
              "(and add to scripts/install-deps.sh)" % (" and ".join(missing), "is" if len(missing) == 1 else "are",
                                                       sys.executable, " ".join(missing)), file=sys.stderr)
        sys.exit(1)


require_packages()
import numpy as np  # noqa: E402

sys.path.insert(0, CLIENT_DIR)
import ppml_client as pc  # noqa: E402

FAILURES = []
CHECKS = [0]


def check(condition, what):
    CHECKS[0] += 1
    if not condition:
        FAILURES.append(what)
        print("FAIL: " + what, file=sys.stderr)


def expect_error(fn, code, reason, what):
    try:
        fn()
    except pc.PPMLError as error:
        check(error.code == code, "%s: code %s, expected %s (%s)" % (what, error.code, code, error))
        check(reason in str(error), "%s: message %r lacks %r" % (what, str(error), reason))
        return
    check(False, what + ": no error raised")


def test_vectors(tool):
    out = subprocess.run([tool, "vectors"], check=True, capture_output=True, text=True).stdout
    v = json.loads(out)
    sk = bytes.fromhex(v["recipient_sk"])
    pk = bytes.fromhex(v["recipient_pk"])
    eph = bytes.fromhex(v["ephemeral_sk"])
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    check(pc._raw_public(X25519PrivateKey.from_private_bytes(sk).public_key()) == pk, "recipient public key")
    check(len(v["cases"]) >= 4, "vector cases")
    for case in v["cases"]:
        name = case["name"]
        plaintext = bytes.fromhex(case["plaintext"])
        body = bytes.fromhex(case["body"])
        # Same bytes from Python for the same key, ephemeral key and chunking.
        enc, py_body, state = pc.encrypt_request(pk, plaintext, case["chunk_size"], eph)
        check(enc == case["enc"], name + ": Ehbp-Encapsulated-Key differs from C++")
        check(py_body == body, name + ": request body differs from C++ (%d vs %d bytes)" % (len(py_body), len(body)))
        # The enclave's side in Python opens the C++ request.
        opened, server_state = pc.decrypt_request(case["enc"], body, sk)
        check(opened == plaintext, name + ": Python cannot decrypt the C++ request")
        # The C++ reply decrypts with the Python client's state ...
        response_plaintext = bytes.fromhex(case["response_plaintext"])
        response_body = bytes.fromhex(case["response_body"])
        got = pc.decrypt_response(state, case["response_nonce"], response_body)
        check(got == response_plaintext, name + ": Python cannot decrypt the C++ reply")
        # ... and Python encrypts the same reply byte for byte.
        nonce_hex, py_response = pc.encrypt_response(server_state, response_plaintext, case["response_chunk_size"],
                                                     bytes.fromhex(case["response_nonce"]))
        check(nonce_hex == case["response_nonce"] and py_response == response_body,
              name + ": reply encryption differs from C++")
        # Tampering with either direction is caught.
        if body:
            bad = bytearray(body)
            bad[-1] ^= 1
            expect_error(lambda: pc.decrypt_request(case["enc"], bytes(bad), sk), "DataLoss", "authenticate",
                         name + ": tampered request")
        if response_body:
            bad = bytearray(response_body)
            bad[5] ^= 0x80
            _, _, state2 = pc.encrypt_request(pk, plaintext, case["chunk_size"], eph)
            expect_error(lambda: pc.decrypt_response(state2, case["response_nonce"], bytes(bad)), "DataLoss",
                         "authenticate", name + ": tampered reply")
            # Dropping the last frame of a multi-frame reply is caught only by
            # the application (EHBP has no terminator): the prefix decrypts.
        if name == "kserve_json":
            outputs = pc.decode_infer_response(response_plaintext, case["json_length"])
            check(np.array_equal(outputs["y"], np.array([[0.25, 0.75], [-3.5, 1 / 3]], dtype=np.float32)),
                  "kserve_json: output y")
            check(outputs["y"].dtype == np.float32, "kserve_json: y is FP32")
            check(np.array_equal(outputs["k"], np.array([[-7, 2147483647]], dtype=np.int32)), "kserve_json: output k")
            request = json.loads(plaintext)
            check(request["inputs"][1]["data"] == [-9007199254740993, 42], "kserve_json: INT64 input exact")
        if name == "kserve_binary":
            check(case["json_length"] is not None, "kserve_binary: reply carries a JSON length")
            outputs = pc.decode_infer_response(response_plaintext, case["json_length"])
            check(np.array_equal(outputs["y"], np.array([1.5, -2.0, 1e30], dtype=np.float32)), "kserve_binary: y")
            check(np.array_equal(outputs["n"], np.array([-1, 1 << 40], dtype=np.int64)), "kserve_binary: n")
            # Python's encoding of the same request is what C++ parsed: check
            # the binary part matches byte for byte.
            py_request, py_length = pc.encode_infer_request(
                {"u": np.array([0, 1, 128, 255], dtype=np.uint8),
                 "s": np.array([[-128, -1], [0, 127]], dtype=np.int8)}, binary=True, binary_output=True)
            check(py_request[py_length:] == plaintext[-8:], "kserve_binary: binary tensor bytes")
    # Wrong recipient: the request does not open.
    other_sk = hashlib.sha256(b"someone else").digest()
    first = v["cases"][0]
    expect_error(lambda: pc.decrypt_request(first["enc"], bytes.fromhex(first["body"]), other_sk), "DataLoss",
                 "authenticate", "request to another key")
    expect_error(lambda: pc.decrypt_request("zz" * 32, b"", sk), "InvalidArgument", "hex", "bad enc header")
    return v


def test_attestation(v):
    a = v["attestation"]
    pem = a["platform_public_key_pem"]
    doc = json.loads(a["document"])
    nonce = bytes.fromhex(a["nonce"])
    now = a["now"]

    parsed = pc.verify_attestation_document(a["document"], pem, a["measurement"], nonce, a["max_age"], now)
    check(parsed["measurement"].hex() == a["measurement"], "attestation: measurement")
    check(parsed["enclave_public_key"].hex() == v["recipient_pk"], "attestation: enclave key")
    # Unpinned: accepted, and the measurement is there to pin.
    parsed = pc.verify_attestation_document(doc, pem.encode(), None, nonce, a["max_age"], now)
    check(parsed["measurement"].hex() == a["measurement"], "attestation unpinned")
    # The key as a file path too.
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(pem)
    try:
        pc.verify_attestation_document(doc, f.name, a["measurement"], nonce, a["max_age"], now)
    finally:
        os.unlink(f.name)

    def verify(d, key=pem, measurement=a["measurement"], expected_nonce=nonce, t=now):
        return lambda: pc.verify_attestation_document(d, key, measurement, expected_nonce, a["max_age"], t)

    def tampered(path, value):
        d = copy.deepcopy(doc)
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return d

    def flip(hex_text, index=0):
        b = bytearray(bytes.fromhex(hex_text))
        b[index] ^= 1
        return b.hex()

    q = doc["quote"]
    cases = [
        ("measurement altered", tampered(["quote", "measurement"], flip(q["measurement"])), {}, "PermissionDenied",
         "bad signature"),
        ("signer altered", tampered(["quote", "signer_id"], flip(q["signer_id"], 5)), {}, "PermissionDenied",
         "bad signature"),
        ("timestamp altered", tampered(["quote", "timestamp_unix"], q["timestamp_unix"] + 1), {}, "PermissionDenied",
         "bad signature"),
        ("signature altered", tampered(["quote", "signature"], flip(q["signature"], 10)), {}, "PermissionDenied",
         "bad signature"),
        ("other platform", doc, {"key": a["other_platform_public_key_pem"]}, "PermissionDenied", "bad signature"),
        ("another nonce expected", doc, {"expected_nonce": b"\x01" * 32}, "PermissionDenied", "another nonce"),
        ("nonce swapped", tampered(["nonce"], "ab" * 32), {"expected_nonce": None}, "PermissionDenied",
         "report data does not bind"),
        ("enclave key swapped", tampered(["enclave_public_key"], flip(doc["enclave_public_key"])), {},
         "PermissionDenied", "report data does not bind"),
        ("other measurement pinned", doc, {"measurement": "00" * 32}, "PermissionDenied", "wrong measurement"),
        ("too old", json.loads(a["stale_document"]), {}, "DeadlineExceeded", "quote too old"),
        ("from the future", doc, {"t": now - 3600}, "PermissionDenied", "quote from the future"),
        ("version 2", tampered(["quote", "version"], 2), {}, "Unsupported", "not supported"),
        ("short measurement", tampered(["quote", "measurement"], "00" * 31), {}, "InvalidArgument", "measurement"),
        ("no quote", {"enclave_public_key": doc["enclave_public_key"], "nonce": doc["nonce"]}, {}, "InvalidArgument",
         "quote"),
        ("short nonce", tampered(["nonce"], "00" * 8), {"expected_nonce": None}, "InvalidArgument", "nonce"),
    ]
    for what, d, overrides, code, reason in cases:
        expect_error(verify(d, **overrides), code, reason, "attestation " + what)
        # Every rejection is an AttestationError.
        try:
            verify(d, **overrides)()
        except pc.AttestationError:
            pass
        except pc.PPMLError as error:
            check(False, "attestation %s: %s is not an AttestationError" % (what, type(error).__name__))
    expect_error(lambda: pc.load_platform_public_key("/nonexistent/platform.pub.pem"), "NotFound", "nonexistent",
                 "missing key file")


def test_roundtrip(tool, v):
    sk = bytes.fromhex(v["recipient_sk"])
    pk = bytes.fromhex(v["recipient_pk"])
    rng = np.random.default_rng(7)
    inputs = {
        "f": rng.standard_normal((3, 5)).astype(np.float32),
        "u": rng.integers(0, 256, size=(7,), dtype=np.uint8),
        "i8": np.array([[-128, 127], [0, -1]], dtype=np.int8),
        "i32": np.array([-(2 ** 31), 2 ** 31 - 1, 0], dtype=np.int32),
        "i64": np.array([-(2 ** 63), 2 ** 63 - 1], dtype=np.int64),
        "scalarish": np.array([[[1.5]]], dtype=np.float32),
    }
    big = {"x": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}  # > one 64 KiB frame
    with tempfile.TemporaryDirectory(prefix="ppml-python-vectors-") as tmp:
        for label, tensors, binary in (("json", inputs, False), ("binary", inputs, True), ("big", big, True)):
            body, json_length = pc.encode_infer_request(tensors, binary=binary, binary_output=binary,
                                                        request_id="py-" + label)
            enc, encrypted, state = pc.encrypt_request(pk, body)
            check(len(encrypted) > len(body), label + ": encrypted body is framed")
            body_path = os.path.join(tmp, label + ".body")
            out_path = os.path.join(tmp, label + ".reply")
            with open(body_path, "wb") as f:
                f.write(encrypted)
            command = [tool, "roundtrip", "--sk", sk.hex(), "--enc", enc, "--body", body_path, "--out", out_path]
            if json_length is not None:
                command += ["--json-length", str(json_length)]
            result = subprocess.run(command, capture_output=True, text=True)
            check(result.returncode == 0, "%s: C++ roundtrip failed: %s" % (label, result.stderr.strip()))
            if result.returncode != 0:
                continue
            meta = json.loads(result.stdout)
            check(meta["plaintext_sha256"] == hashlib.sha256(body).hexdigest(),
                  label + ": C++ decrypted other bytes than Python encrypted")
            check([i["name"] for i in meta["inputs"]] == list(tensors), label + ": input names and order")
            for entry in meta["inputs"]:
                check(entry["shape"] == list(tensors[entry["name"]].shape), label + ": shape of " + entry["name"])
            with open(out_path, "rb") as f:
                reply = f.read()
            plaintext = pc.decrypt_response(state, meta["response_nonce"], reply)
            check((meta["json_length"] is not None) == binary, label + ": reply binary as asked")
            outputs = pc.decode_infer_response(plaintext, meta["json_length"])
            for name, array in tensors.items():
                check(name in outputs, label + ": output " + name)
                if name in outputs:
                    check(outputs[name].dtype == array.dtype and np.array_equal(outputs[name], array),
                          "%s: %s came back different (%s vs %s)" % (label, name, outputs[name].dtype, array.dtype))
            # A reply decrypted with another request's state fails.
            _, _, other_state = pc.encrypt_request(pk, body)
            expect_error(lambda: pc.decrypt_response(other_state, meta["response_nonce"], reply), "DataLoss",
                         "authenticate", label + ": reply under another request's key")
    expect_error(lambda: pc.encode_infer_request({"x": np.array([np.nan], dtype=np.float32)}), "InvalidArgument",
                 "NaN", "NaN as JSON")
    expect_error(lambda: pc.encode_infer_request({"x": np.array([1.0])}), "Unsupported", "float64", "float64 input")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    args = parser.parse_args()
    try:
        v = test_vectors(args.tool)
        test_attestation(v)
        test_roundtrip(args.tool, v)
    except Exception:  # a crash is a failure with its trace, not a skip
        traceback.print_exc()
        FAILURES.append("exception")
    if FAILURES:
        print("client_python_vectors: %d of %d checks FAILED" % (len(FAILURES), CHECKS[0]), file=sys.stderr)
        return 1
    print("client_python_vectors: %d checks passed" % CHECKS[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
