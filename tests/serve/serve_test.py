#!/usr/bin/python3
"""`ppml serve` end to end: the whole stack (its own TLS redis-server, the
HTTPS front-end, two enclave workers) from a config like the quickstart's,
then through the ready line only:
  - `ppml attest` and `ppml infer` (C++ client) and the Python client get
    verified, decrypted answers; the Python client classifies real
    Fashion-MNIST test images;
  - a worker killed with SIGKILL: the service keeps answering and serve
    starts it again;
  - no log of any process holds the plaintext bytes of a request that went
    through;
  - SIGINT stops every process and serve exits 0.
With --outsource integrity|private, serve also starts ppml-accel: the
workers' metrics show layers computed there, and after the accelerator is
killed the service keeps answering, serve starts it again and the workers
reconnect to it.

    serve_test.py --ppml BUILD/bin/ppml --source SOURCE_DIR [--outsource MODE]
"""
import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

FAILURES = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def pgrep(pattern):
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def kill_one(pattern, expected, what, infer_ten):
    """SIGKILLs the first of the `expected` processes matching `pattern`;
    the service must answer ten requests right after. Their pids."""
    pids = pgrep(pattern)
    check(len(pids) == expected, f"{expected} {what} process(es) run ({len(pids)})")
    if pids:
        os.kill(int(pids[0]), signal.SIGKILL)
    check(infer_ten() == 10, f"the service keeps answering with a {what} killed")
    return pids


def worker_metric(logs, name, labels=""):
    """The sum over the running workers of one metric, read from the
    /metrics address each worker's log names (metrics_listening)."""
    total = 0.0
    for log in sorted(os.listdir(logs)):
        if not log.startswith("worker-"):
            continue
        lines = [l for l in open(os.path.join(logs, log)).read().splitlines() if "event=metrics_listening" in l]
        if not lines:
            continue
        address = lines[-1].split("address=")[1].split()[0].strip('"')
        try:
            text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
        except OSError:
            continue  # a worker being restarted
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                total += float(line.split()[-1])
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ppml", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--outsource", choices=["integrity", "private"])
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(args.source, "clients", "python"))
    try:
        import numpy as np
        from ppml_client import PPMLClient
    except ImportError as e:
        sys.exit(f"serve_test: {e} (install Debian's python3-numpy, python3-cryptography, python3-requests)")

    work = tempfile.mkdtemp(prefix="ppml-serve-test-")
    # Bad values are usage errors naming the key, before anything starts.
    model = f"model: {{name: fashion, onnx: {args.source}/models/fashion_cnn.onnx}}\n"
    for serve_extra, extra, key in (("accelerator: {backend: gpu}", "", "serve.accelerator.backend"),
                                    ("accelerator: {threads: -1}", "", "serve.accelerator.threads"),
                                    ("workers: 2", "enclave: {outsource: {mode: fast}}", "enclave.outsource.mode")):
        bad = os.path.join(work, "bad.yaml")
        with open(bad, "w") as f:
            f.write(f"serve: {{state_dir: {work}/bad, {serve_extra}}}\n{model}{extra}\n")
        run = subprocess.run([args.ppml, "serve", "--config", bad], capture_output=True, text=True, timeout=60)
        check(run.returncode == 2 and key in run.stderr, f"a bad {key} is a usage error naming it: {run.stderr.strip()}")
    config = os.path.join(work, "serve.yaml")
    with open(config, "w") as f:
        f.write(f"""serve:
  state_dir: {work}/state
  workers: 2
model:
  name: fashion
  onnx: {args.source}/models/fashion_cnn.onnx
frontend:
  listen: {{host: 127.0.0.1, port: 0}}
worker:
  threads: 1
  recovery: {{claim_idle_ms: 1000}}
""")
        if args.outsource:
            f.write(f"enclave:\n  outsource: {{mode: {args.outsource}, pad_pool_images: 8}}\n")
    serve = subprocess.Popen([args.ppml, "serve", "--config", config], stdout=subprocess.PIPE,
                             stderr=open(os.path.join(work, "serve.err"), "w"), text=True)
    try:
        ready = ""
        deadline = time.time() + 180
        while time.time() < deadline and not ready:
            line = serve.stdout.readline()
            if not line:
                break
            if line.startswith("ready:"):
                ready = line.strip()
        check(ready != "", "serve printed its ready line")
        if not ready:
            print(open(os.path.join(work, "serve.err")).read())
            return 1
        fields = dict(item.split("=", 1) for item in ready.split()[1:])
        for key in ("url", "ca", "platform_pubkey", "measurement", "redis", "redis_ca", "redis_password_file"):
            check(key in fields, f"ready line has {key}=")
        if args.outsource:
            check(fields.get("outsource") == args.outsource, f"ready line has outsource={args.outsource}")
            check(fields.get("accelerator", "").startswith("unix:"), "ready line names the accelerator serve started")
        env = dict(os.environ, PPML_URL=fields["url"], PPML_CA=fields["ca"],
                   PPML_PLATFORM_PUBKEY=fields["platform_pubkey"], PPML_MEASUREMENT=fields["measurement"])

        attest = subprocess.run([args.ppml, "attest", "--model", "fashion"], env=env, capture_output=True, text=True)
        check(attest.returncode == 0, "ppml attest verifies the quote: " + attest.stderr.strip()[-200:])

        # A marker that must never show up outside the enclave and the client.
        marker = np.full((1, 1, 28, 28), 0.123456789, np.float32)
        marker_npy = os.path.join(work, "marker.npy")
        np.save(marker_npy, marker)
        infer = subprocess.run([args.ppml, "infer", "--model", "fashion", "--input", marker_npy, "--json"], env=env,
                               capture_output=True, text=True)
        check(infer.returncode == 0, "ppml infer answers: " + infer.stderr.strip()[-200:])
        if infer.returncode == 0:
            result = json.loads(infer.stdout.strip().splitlines()[-1])
            check(result["outputs"][0]["shape"] == [1, 10], "the answer is one row of 10 logits")

        with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:50].astype(np.float32) / 255
        with gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)[:50]
        client = PPMLClient(fields["url"], fields["platform_pubkey"], measurement=fields["measurement"],
                            ca_cert=fields["ca"])
        client.attest("fashion")
        correct = 0
        for i in range(len(labels)):
            logits = next(iter(client.infer("fashion", {"input": images[i:i + 1]}, binary=(i % 2 == 0)).values()))
            correct += int(np.argmax(logits[0]) == labels[i])
        check(correct >= 40, f"Python client: {correct}/50 Fashion-MNIST test images classified right")

        state = os.path.join(work, "state")
        logs = os.path.join(state, "logs")

        def infer_ten():
            for i in range(10):
                next(iter(client.infer("fashion", {"input": images[i:i + 1]}).values()))
            return 10
        if args.outsource:
            accelerated = 'ppml_outsource_layer_calls_total', '{where="accelerator"}'
            before = worker_metric(logs, *accelerated)
            check(before > 0, f"the workers computed layers on the accelerator ({before:.0f} calls)")
            kill_one("ppml-accel --listen unix:" + state, 1, "ppml-accel", infer_ten)
            deadline = time.time() + 30
            reconnected = 0
            while time.time() < deadline and reconnected == 0:
                time.sleep(0.5)
                next(iter(client.infer("fashion", {"input": images[:1]}).values()))
                reconnected = worker_metric(logs, "ppml_outsource_reconnects_total")
            check(reconnected >= 1, "serve started the accelerator again and a worker reconnected to it")
            after = worker_metric(logs, *accelerated)
            check(after > before, f"layers go to the accelerator again ({before:.0f} -> {after:.0f} calls)")
            check(worker_metric(logs, "ppml_outsource_accelerator_bad") == 0, "no worker dropped the accelerator")

        # Kill one worker: the other answers, and serve starts a new one.
        worker_pids = kill_one("ppml-worker --config " + state, 2, "worker", infer_ten)
        restarted = False
        deadline = time.time() + 30
        while time.time() < deadline and not restarted:
            pids = pgrep("ppml-worker --config " + state)
            restarted = len(pids) == 2 and worker_pids[0] not in pids
            time.sleep(0.2)
        check(restarted, "serve started the killed worker again")

        # The operator's view: logs and Redis hold no plaintext of the marker request.
        marker_bytes = marker.tobytes()[:16]
        marker_text = "0.123456789"
        leaked = []
        for name in os.listdir(logs):
            data = open(os.path.join(logs, name), "rb").read()
            if marker_bytes in data or marker_text.encode() in data:
                leaked.append(name)
        check(not leaked, f"no log holds the request's plaintext ({', '.join(leaked) or 'none'})")
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            code = serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            code = None
        check(code == 0, f"SIGINT stops serve with exit 0 ({code})")
        left = subprocess.run(["pgrep", "-f", work], capture_output=True, text=True).stdout.split()
        check(not left, f"no process serve started is left ({left})")
        shutil.rmtree(work, ignore_errors=True)
    print(f"serve_test: {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
