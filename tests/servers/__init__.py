"""The real-server rig: Dovecot, Courier-IMAP and Cyrus started on loopback for tests.

See README.md ("The real-server rig") and ``python -m tests.servers --help``.
"""
