"""The storage interface: SQLite by default, PostgreSQL for scale-out.

Migrations are ordered and versioned.

Not built yet: arrives with the serve issue (#6).
"""
