#!/usr/bin/python3
"""`ppml attest`, `ppml infer` and the Python client's HTTP side against
ppml_fake_frontend processes (tests/client/fake_frontend.h): the real
client code over real TLS, with a software enclave behind the fake
front-end, honest or misbehaving (--attack).

    cli_test.py --ppml PATH/TO/ppml --fake-frontend PATH/TO/ppml_fake_frontend [--png 0|1]

Checks exit codes (0 ok, 1 failure, 2 usage), the printed fields, the
--json last line, every rejected attestation and reply, and that the Python
PPMLClient talks to the same server. Fails (never skips) when
python3-numpy or python3-requests is missing, naming the Debian package.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "clients", "python"))

missing = []
for module, package in (("numpy", "python3-numpy"), ("cryptography", "python3-cryptography"),
                        ("requests", "python3-requests")):
    try:
        __import__(module)
    except ImportError:
        missing.append(package)
if missing:
    print("client_cli: FAIL: %s missing for %s; install with `apt-get install %s` (and add to "
          "scripts/install-deps.sh)" % (", ".join(missing), sys.executable, " ".join(missing)), file=sys.stderr)
    sys.exit(1)

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
    return condition


class Fake:
    """A ppml_fake_frontend process and the fields of its ready line."""

    def __init__(self, binary, attack="none"):
        self.dir = tempfile.TemporaryDirectory(prefix="ppml-cli-test-")
        self.process = subprocess.Popen([binary, "--dir", self.dir.name, "--attack", attack], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline().strip()
        if not line.startswith("ready: "):
            raise RuntimeError("ppml_fake_frontend did not get ready: %r" % line)
        self.fields = dict(item.split("=", 1) for item in line[len("ready: "):].split())
        self.url = self.fields["url"]
        self.ca = self.fields["ca"]
        self.pubkey = self.fields["platform_pubkey"]
        self.measurement = self.fields["measurement"]

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Runner:
    def __init__(self, ppml):
        self.ppml = ppml

    def run(self, args, env=None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PPML_")}
        full_env.update(env or {})
        r = subprocess.run([self.ppml] + args, capture_output=True, text=True, env=full_env, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def flags(self, fake, measurement=True):
        f = ["--url", fake.url, "--ca", fake.ca, "--platform-pubkey", fake.pubkey]
        if measurement:
            f += ["--measurement", fake.measurement]
        return f


def last_json(stdout):
    lines = [l for l in stdout.strip().splitlines() if l.strip()]
    return json.loads(lines[-1]) if lines else None


def write_png(path, width, height, value):
    """An 8-bit greyscale PNG of one value, with the standard library only."""
    raw = b"".join(b"\x00" + bytes([value]) * width for _ in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_attest(r, fake, other):
    code, out, err = r.run(["attest"] + r.flags(fake) + ["--model", "double", "--json"])
    check(code == 0, "attest: exit %d: %s" % (code, err))
    doc = last_json(out)
    check(doc and doc["measurement"] == fake.measurement and doc["measurement_pinned"] is True,
          "attest --json: measurement pinned")
    check(doc and len(doc["enclave_public_key"]) == 64 and len(doc["nonce"]) == 64, "attest --json: key and nonce")
    for field in ("measurement:", "signer_id:", "timestamp:", "enclave_public_key:", "matches the pinned value"):
        check(field in out, "attest prints " + field)

    code, out, err = r.run(["attest"] + r.flags(fake, measurement=False))
    check(code == 0 and "NOT PINNED" in out and fake.measurement in out, "attest unpinned reports the measurement")

    # The ready line's fields as environment variables.
    code, out, err = r.run(["attest"], env={"PPML_URL": fake.url, "PPML_CA": fake.ca,
                                            "PPML_PLATFORM_PUBKEY": fake.pubkey,
                                            "PPML_MEASUREMENT": fake.measurement})
    check(code == 0 and "matches the pinned value" in out, "attest from PPML_* variables: %s" % err)

    code, out, err = r.run(["attest"] + r.flags(fake, False) + ["--measurement", "00" * 32])
    check(code == 1 and "wrong measurement" in err and fake.url in err, "attest wrong measurement: %d %s" % (code, err))

    # Flags that are wrong before the network: exit 2, naming the flag.
    for args, needle in ((["--measurement", "xyz"], "--measurement"),
                         (["--measurement", "ab" * 31], "--measurement")):
        code, out, err = r.run(["attest"] + r.flags(fake, False) + args)
        check(code == 2 and needle in err, "attest %s: exit %d: %s" % (args, code, err))
    code, out, err = r.run(["attest", "--url", "ftp://x", "--platform-pubkey", fake.pubkey])
    check(code == 2 and "--url" in err, "attest bad URL: exit %d: %s" % (code, err))
    code, out, err = r.run(["attest", "--url", fake.url, "--ca", fake.ca])
    check(code == 2 and "platform-pubkey" in err, "attest without --platform-pubkey: exit %d: %s" % (code, err))

    # Files that do not load, a CA that does not verify the server.
    code, out, err = r.run(["attest", "--url", fake.url, "--ca", fake.ca, "--platform-pubkey", "/nonexistent.pem"])
    check(code == 1 and "/nonexistent.pem" in err, "attest missing key file: %d %s" % (code, err))
    code, out, err = r.run(["attest", "--url", fake.url, "--ca", "/nonexistent-ca.pem", "--platform-pubkey",
                            fake.pubkey])
    check(code != 0 and "/nonexistent-ca.pem" in err, "attest missing CA file: %d %s" % (code, err))
    code, out, err = r.run(["attest", "--url", fake.url, "--ca", other.ca, "--platform-pubkey", fake.pubkey])
    check(code == 1 and "certificate verify failed" in err and fake.url in err,
          "attest untrusted server certificate: %d %s" % (code, err))
    # The other fake's platform key: the quote does not verify.
    code, out, err = r.run(["attest", "--url", fake.url, "--ca", fake.ca, "--platform-pubkey", other.pubkey])
    check(code == 1 and "bad signature" in err, "attest under another platform key: %d %s" % (code, err))


def test_infer(r, fake, tmp, png_supported):
    x = np.array([0.1, 0.5, 0.2, 0.9], dtype=np.float32)
    np.save(os.path.join(tmp, "x.npy"), x)
    for binary in ([], ["--binary"]):
        code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "double", "--input",
                                                            os.path.join(tmp, "x.npy"), "--json"] + binary)
        check(code == 0, "infer .npy %s: exit %d: %s" % (binary, code, err))
        doc = last_json(out)
        if check(doc is not None, "infer --json line"):
            check(doc["model"] == "double" and doc["measurement"] == fake.measurement, "infer --json model")
            check(doc["outputs"] == [{"name": "y", "shape": [1, 4], "datatype": "FP32", "argmax": [3]}],
                  "infer --json outputs: %s" % doc["outputs"])
            check(doc["latency_ms"] > 0, "infer --json latency")
        check('output "y" FP32 [1,4]: 0.2, 1, 0.4, 1.8' in out, "infer prints the values: " + out)
        check("top-1 class 3" in out, "infer prints the top-1 class")

    # Inputs that do not fit: usage errors naming the file.
    np.save(os.path.join(tmp, "f64.npy"), x.astype(np.float64))
    np.save(os.path.join(tmp, "five.npy"), np.zeros(5, dtype=np.float32))
    np.save(os.path.join(tmp, "ints.npy"), np.zeros(4, dtype=np.int32))
    for name, needle in (("f64.npy", "f64.npy"), ("five.npy", "does not fit"), ("ints.npy", "astype"),
                         ("absent.npy", "absent.npy"), ("x.txt", "expected a .npy, .png or .json")):
        code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "double", "--input", os.path.join(tmp, name)])
        check(code == 2 and needle in err, "infer %s: exit %d: %s" % (name, code, err))

    # A KServe v2 JSON body, sent as is.
    body = {"inputs": [{"name": "b", "shape": [2, 3], "datatype": "UINT8", "data": [1, 2, 3, 100, 100, 55]}]}
    with open(os.path.join(tmp, "req.json"), "w") as f:
        json.dump(body, f)
    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "bytes", "--input", os.path.join(tmp, "req.json"),
                                                        "--json"])
    check(code == 0, "infer .json: exit %d: %s" % (code, err))
    doc = last_json(out)
    check(doc and doc["outputs"] == [{"name": "sum", "shape": [2, 1], "datatype": "INT64", "argmax": None}],
          "infer .json outputs: %s" % (doc and doc["outputs"]))
    check("6, 255" in out, "infer .json values: " + out)
    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "bytes", "--input", os.path.join(tmp, "req.json"),
                                                        "--binary"])
    check(code == 2 and "--binary" in err, "infer .json --binary is a usage error")
    with open(os.path.join(tmp, "bad.json"), "w") as f:
        f.write('{"inputs": []}')
    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "bytes", "--input", os.path.join(tmp, "bad.json")])
    check(code == 2 and "bad.json" in err, "infer malformed .json: %d %s" % (code, err))
    # The enclave rejects an input of the wrong name: its encrypted message comes back.
    wrong = {"inputs": [{"name": "zz", "shape": [1, 3], "datatype": "UINT8", "data": [1, 2, 3]}]}
    with open(os.path.join(tmp, "wrong.json"), "w") as f:
        json.dump(wrong, f)
    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "bytes", "--input", os.path.join(tmp, "wrong.json")])
    check(code == 1 and "encrypted error from the enclave" in err and 'named "b"' in err,
          "infer rejected by the enclave: %d %s" % (code, err))

    # PNG: 28x28 grey 128 -> mean 0.502 -> class 5 of the fake image model.
    write_png(os.path.join(tmp, "grey.png"), 28, 28, 128)
    write_png(os.path.join(tmp, "small.png"), 10, 10, 0)
    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "image", "--input", os.path.join(tmp, "grey.png"),
                                                        "--json", "--binary"])
    if png_supported:
        check(code == 0, "infer .png: exit %d: %s" % (code, err))
        doc = last_json(out)
        check(doc and doc["outputs"][1] == {"name": "scores", "shape": [1, 10], "datatype": "FP32", "argmax": [5]},
              "infer .png outputs: %s" % (doc and doc["outputs"]))
        check('output "mean" FP32 [1,1]: 0.50196' in out, "infer .png mean: " + out)
        code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "image", "--input",
                                                            os.path.join(tmp, "small.png")])
        check(code == 2 and "small.png" in err and "resize" in err, "infer wrong-size .png: %d %s" % (code, err))
    else:
        check(code == 2 and "libpng-dev" in err, "infer .png without libpng says so: %d %s" % (code, err))

    code, out, err = r.run(["infer"] + r.flags(fake) + ["--model", "nosuch", "--input", os.path.join(tmp, "x.npy")])
    check(code == 1 and "unknown model" in err and fake.url in err, "infer unknown model: %d %s" % (code, err))


def test_attacks(r, fake_binary, tmp):
    np.save(os.path.join(tmp, "x.npy"), np.ones(4, dtype=np.float32))
    for attack, command, reason in (("replayed-nonce", "attest", "another nonce"),
                                    ("other-platform", "attest", "bad signature"),
                                    ("key-swap", "attest", "report data does not bind"),
                                    ("stale-quote", "attest", "quote too old"),
                                    ("wrong-measurement", "attest", "wrong measurement"),
                                    ("key-swap", "infer", "report data does not bind"),
                                    ("plaintext-reply", "infer", "unencrypted reply is refused"),
                                    ("tampered-reply", "infer", "does not decrypt"),
                                    ("other-model", "infer", "routed to another model's enclave")):
        with Fake(fake_binary, attack) as fake:
            args = [command] + r.flags(fake)
            if command == "infer":
                args += ["--model", "double", "--input", os.path.join(tmp, "x.npy")]
            code, out, err = r.run(args)
            check(code == 1 and reason in err, "%s under %s: exit %d: %s" % (command, attack, code, err))
            check(not out.strip() or command == "infer", "%s under %s printed no quote fields" % (command, attack))


def test_python_client(fake, fake_binary, tmp):
    client = pc.PPMLClient(fake.url, fake.pubkey, measurement=fake.measurement, ca_cert=fake.ca)
    quote = client.attest("double")
    check(quote["measurement"] == fake.measurement and quote["measurement_pinned"], "python attest")
    meta = client.model_metadata("image")
    check(meta["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}, "python metadata")
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    for binary in (False, True):
        out = client.infer("double", {"x": x}, binary=binary)
        check(out["y"].dtype == np.float32 and np.array_equal(out["y"], 2 * x), "python infer binary=%s" % binary)
    check(client.last_request_id is not None, "python last_request_id")
    out = client.infer("bytes", {"b": np.array([[250, 3, 2]], dtype=np.uint8)})
    check(out["sum"].dtype == np.int64 and out["sum"].tolist() == [[255]], "python infer UINT8 -> INT64")
    try:
        client.infer("double", {"nope": x})
        check(False, "python infer wrong input raised nothing")
    except pc.PPMLError as error:
        check(error.code == "InvalidArgument" and error.http_status == 400 and "encrypted error" in str(error),
              "python infer wrong input: %s %s" % (error.code, error))
    try:
        client.model_metadata("nosuch")
        check(False, "python unknown model raised nothing")
    except pc.PPMLError as error:
        check(error.code == "NotFound", "python unknown model: " + error.code)

    unpinned = pc.PPMLClient(fake.url, fake.pubkey, ca_cert=fake.ca)
    check(unpinned.attest()["measurement"] == fake.measurement, "python unpinned attest")
    try:
        pc.PPMLClient(fake.url, fake.pubkey, measurement="00" * 32, ca_cert=fake.ca).attest()
        check(False, "python wrong measurement accepted")
    except pc.AttestationError as error:
        check("wrong measurement" in str(error), "python wrong measurement: %s" % error)
    try:
        pc.PPMLClient(fake.url, fake.pubkey).attest()  # system CAs do not know the fake's CA
        check(False, "python untrusted certificate accepted")
    except pc.PPMLError as error:
        check(error.code == "PermissionDenied", "python untrusted certificate: %s" % error.code)
    for attack, reason in (("plaintext-reply", "unencrypted reply is refused"), ("tampered-reply", "does not decrypt"),
                           ("key-swap", "report data does not bind"),
                           ("other-model", "routed to another model's enclave")):
        with Fake(fake_binary, attack) as bad:
            try:
                pc.PPMLClient(bad.url, bad.pubkey, bad.measurement, bad.ca).infer("double", {"x": x})
                check(False, "python accepted " + attack)
            except pc.PPMLError as error:
                check(reason in str(error), "python under %s: %s" % (attack, error))

    # The module's own command line.
    r = subprocess.run([sys.executable, os.path.join(CLIENT_DIR, "ppml_client.py"), "attest", "--url", fake.url,
                        "--platform-pubkey", fake.pubkey, "--ca", fake.ca, "--measurement", fake.measurement],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and json.loads(r.stdout)["measurement"] == fake.measurement,
          "python CLI attest: %s" % r.stderr)
    np.save(os.path.join(tmp, "py.npy"), x)
    r = subprocess.run([sys.executable, os.path.join(CLIENT_DIR, "ppml_client.py"), "infer", "--url", fake.url,
                        "--platform-pubkey", fake.pubkey, "--ca", fake.ca, "--model", "double", "--input",
                        os.path.join(tmp, "py.npy"), "--binary"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and json.loads(r.stdout)["y"]["shape"] == [2, 4], "python CLI infer: %s" % r.stderr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ppml", required=True)
    parser.add_argument("--fake-frontend", required=True)
    parser.add_argument("--png", type=int, default=1, help="1 when ppml was built with libpng")
    args = parser.parse_args()
    r = Runner(args.ppml)
    try:
        with tempfile.TemporaryDirectory(prefix="ppml-cli-inputs-") as tmp, \
                Fake(args.fake_frontend) as fake, Fake(args.fake_frontend) as other:
            test_attest(r, fake, other)
            test_infer(r, fake, tmp, bool(args.png))
            test_attacks(r, args.fake_frontend, tmp)
            test_python_client(fake, args.fake_frontend, tmp)
    except Exception:
        traceback.print_exc()
        FAILURES.append("exception")
    if FAILURES:
        print("client_cli: %d of %d checks FAILED" % (len(FAILURES), CHECKS[0]), file=sys.stderr)
        return 1
    print("client_cli: %d checks passed" % CHECKS[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
