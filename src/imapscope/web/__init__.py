"""The web admin UI. Presents the store through the API; no protocol logic.

Not built yet: arrives with the serve issue (#6).
"""
