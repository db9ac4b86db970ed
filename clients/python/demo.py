#!/usr/bin/python3
"""The encrypted HTTPS path end to end with the Python client: Fashion-MNIST
test images (Debian's dataset-fashion-mnist) sent one request each, a few
in flight at once, to a running ppml-serving; prints

    demo: N/N answered, accuracy X, p50 Y ms

and exits 0 when every request was answered. The arguments are the fields of
`ppml serve`'s ready line:

    demo.py --url URL --ca CA --platform-pubkey P --measurement HEX [--images 1000]
"""
import argparse
import concurrent.futures
import gzip
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ppml_client import PPMLClient  # noqa: E402

DATASET = "/usr/share/datasets/fashion-mnist"


def load_test_set(count):
    """The first `count` test images as float32 [1,1,28,28] (pixel/255) and their labels."""
    try:
        with gzip.open(os.path.join(DATASET, "t10k-images-idx3-ubyte.gz")) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        with gzip.open(os.path.join(DATASET, "t10k-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
    except OSError as e:
        sys.exit(f"demo: {e} (install Debian's dataset-fashion-mnist)")
    count = min(count, len(labels))
    return (images[:count].astype(np.float32) / 255.0), labels[:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--platform-pubkey", required=True)
    parser.add_argument("--measurement", required=True)
    parser.add_argument("--model", default="fashion")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    images, labels = load_test_set(args.images)
    clients = [PPMLClient(args.url, args.platform_pubkey, measurement=args.measurement, ca_cert=args.ca)
               for _ in range(args.concurrency)]
    quote = clients[0].attest(args.model)
    print(f"demo: enclave attested (measurement {args.measurement[:16]}..., fresh nonce); "
          f"sending {len(labels)} encrypted requests", file=sys.stderr)
    input_name = "input"

    def classify(index):
        client = clients[index % len(clients)]
        start = time.perf_counter()
        try:
            outputs = client.infer(args.model, {input_name: images[index:index + 1]}, binary=True)
        except Exception as e:  # one failed request is counted, not fatal
            return index, None, str(e), 0.0
        latency_ms = (time.perf_counter() - start) * 1000
        logits = next(iter(outputs.values()))
        return index, int(np.argmax(logits[0])), None, latency_ms

    answered, correct, latencies, errors = 0, 0, [], []
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        for index, predicted, error, latency_ms in pool.map(classify, range(len(labels))):
            if error is not None:
                errors.append(error)
                continue
            answered += 1
            correct += predicted == labels[index]
            latencies.append(latency_ms)
            if answered % 200 == 0:
                print(f"demo: {answered}/{len(labels)} answered", file=sys.stderr)
    for e in errors[:3]:
        print(f"demo: request failed: {e}", file=sys.stderr)
    accuracy = correct / answered if answered else 0.0
    p50 = statistics.median(latencies) if latencies else 0.0
    print(f"demo: {answered}/{len(labels)} answered, accuracy {accuracy:.4f}, p50 {p50:.1f} ms")
    del quote
    return 0 if answered == len(labels) else 1


if __name__ == "__main__":
    sys.exit(main())
