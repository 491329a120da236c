"""Scheduling policies: small, separately testable rules the core consults."""
