"""Secure aggregation (Bonawitz et al., CCS 2017; SecAgg+, Bell et al., CCS 2020).

The server learns the sum of the clients' updates and nothing else about any one of them.
Modules, bottom up:

- :mod:`.constants`   wire widths and key-derivation labels both parties share
- :mod:`.fixedpoint`  floats -> the ring Z_{2^b} (clip, stochastic rounding, bit budget)
- :mod:`.shamir`      t-of-n secret sharing over GF(2^521 - 1)
- :mod:`.prg`         AES-CTR mask expansion to a vector of Z_{2^b}
- :mod:`.keys`        X25519 + HKDF-SHA256 key agreement, AES-GCM, Ed25519 signatures
- :mod:`.graph`       complete or random k-regular (SecAgg+) graph; security parameters
- :mod:`.messages`    the protocol's messages and their byte sizes
- :mod:`.client`, :mod:`.server`  the two state machines
- :mod:`.protocol`    runs a session in one process: dropouts, bytes and seconds
- :mod:`.aggregator`  the ``secagg`` defense for federated rounds
"""
