//! Zero-trust identity: hybrid node keys, trust-domain CA, SPIFFE SVIDs, join tokens, revocation and link policy.
