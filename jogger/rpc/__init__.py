"""gRPC over mutual TLS on trio: transport only.

Listeners, connections and calls, what each peer is admitted to hold, who the peer is (from
its client certificate), and the client end. It carries messages and calls, and imports
neither ``jogger.engine`` nor ``jogger.server`` (tests/test_layout.py checks): the servicers
that turn a call into an engine call live in ``jogger.server``.
"""
