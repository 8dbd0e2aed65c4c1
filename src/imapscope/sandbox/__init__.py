"""A real IMAP server on the codec's server role, with SMTP delivery and fault injection.

Not built yet: arrives with the sandbox issue (#5).
"""
