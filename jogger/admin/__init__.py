"""``jogger certs issue``, ``revoke`` and ``crl``: the CA at work (one module per command)."""
