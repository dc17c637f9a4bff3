"""The signing host's view of a request (pure): bounded parsing, per-kind decoding of the bytes to
sign against the context the request carries, the canonical summary that ``show`` prints and
``sign --expect`` pins, terminal-safe rendering, and the optional signing-host policy.

Bytes and typed values in, typed values out; files, terminals and the clock live in
``pcrtool.sign.host_files`` and ``pcrtool.cli.sign_request``.
"""
