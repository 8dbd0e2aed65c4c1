"""The service surface: REST API (/api/v1), event stream, /livez, /readyz, /metrics.

It presents the store and drives the other pieces; it holds no protocol logic.

Not built yet: arrives with the serve issue (#6).
"""
