"""Constants both parties of secure aggregation share: wire widths and key-derivation labels.

A leaf module (it imports nothing of the protocol), so the client, the server and the messages
agree on them without importing one another.
"""

KIND_BYTES = 1  # message kind on the wire
ID_BYTES = 4  # a party id
HEADER_BYTES = KIND_BYTES + ID_BYTES
SESSION_BYTES = 16  # the session id every reply names
DIGEST_BYTES = 32  # SHA-256: graph digest, session binding, model digest

SHARE_PURPOSE = b"share-encryption"  # HKDF info label of c_uv, the key that encrypts shares
MASK_PURPOSE = b"pairwise-mask"  # HKDF info label of s_uv, the pairwise mask seed
