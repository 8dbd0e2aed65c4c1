"""The troubleshooting ladder and the findings catalogue.

Findings are stable codes with severity, summary, fix and verbatim evidence.

Not built yet: arrives with the check issue (#4).
"""
