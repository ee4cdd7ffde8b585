"""What ``secagg:bind_model`` costs in bytes: each client's traffic with the model bound and without.

    python benchmarks/secagg_bind.py                # n = 8 and n = 100, d = 10,000
    python benchmarks/secagg_bind.py --dim 100000 --json bind.json

Binding adds one 32-byte model digest to every AdvertiseKeys message, relayed to each neighbour
in the key broadcast, so a client sends 32 bytes more and receives 32 (k + 1) bytes more (k
neighbours), whatever d is. Bytes come from the protocol's own cost accounting
(:func:`~gradleak.defenses.secagg.protocol.run_secagg`), on the same inputs for both runs, whose
sums are checked to be equal and exact. Default parameters per cohort (``plan``): the complete
graph, passive, for n = 8; SecAgg+ and active mode for n = 100. No dropouts.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np

from gradleak.defenses.secagg.graph import plan
from gradleak.defenses.secagg.protocol import run_secagg

DIGEST = hashlib.sha256(b"gradleak/benchmarks/secagg_bind").digest()  # any model's digest: only its size matters


def measure(clients: int, dim: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(0, 2**32, dim, dtype=np.uint64).astype(np.uint32) for _ in range(clients)]
    parameters = plan(clients)
    runs = {}
    for bind in (False, True):
        digests = [DIGEST] * clients if bind else None
        runs[bind] = run_secagg(lambda u: inputs[u], parameters, dim, 32, model_digests=digests)
    expected = np.sum(np.stack(inputs), axis=0, dtype=np.uint32)
    assert all(np.array_equal(r.total, expected) for r in runs.values()), "a sum is wrong"
    off, on = runs[False].summary(), runs[True].summary()
    row = {"clients": clients, "dim": dim, "neighbors": parameters.neighbors, "active": parameters.active}
    for key in ("client_bytes_sent", "client_bytes_received"):
        row[f"{key}_off"], row[f"{key}_on"] = off[key], on[key]
        row[f"{key}_added"] = on[key] - off[key]
        row[f"{key}_ratio"] = on[key] / off[key]
    total_off = off["client_bytes_sent"] + off["client_bytes_received"]
    total_on = on["client_bytes_sent"] + on["client_bytes_received"]
    row["total_ratio"] = total_on / total_off
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=10_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 100])
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = [measure(n, args.dim) for n in args.clients]
    print("| clients | k | active | sent / client off → on | received / client off → on | added (sent, received) | ratio (sent+received) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['clients']} | {r['neighbors']} | {'yes' if r['active'] else 'no'} "
            f"| {r['client_bytes_sent_off']:,.0f} → {r['client_bytes_sent_on']:,.0f} B "
            f"| {r['client_bytes_received_off']:,.0f} → {r['client_bytes_received_on']:,.0f} B "
            f"| {r['client_bytes_sent_added']:,.0f} B, {r['client_bytes_received_added']:,.0f} B "
            f"| {r['total_ratio']:.5f}× |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
