"""The per-account sync engine.

Folders, message metadata and flags mirrored into the store, with named running states and an
error log.

Not built yet: arrives with the serve issue (#6).
"""
