"""Per-attempt completion tokens: only the runtime an attempt was given to may report it.

A report ends an attempt as if the function had answered it (core/reports.py),
so knowing an execution id must not be enough: ids travel in headers, logs,
env and callbacks. Each attempt gets its own secret token, sent to that
attempt's runtime only (the X-Completion-Token header of its invocation).

The token is derived, not stored: HMAC-SHA256 under a key drawn from the
`secrets` module when the scheduler starts, over the execution id and the
attempt number. Nothing per attempt is kept (no memory, nothing that a status
read or a log line could leak), any attempt's token can be recomputed to tell
a stale owner (ignored) from a forger (refused), and tokens die with the
process, as the executions they authorize do. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

KEY_BYTES = 32


class CompletionTokens:
    def __init__(self, key: bytes | None = None) -> None:
        # The key's inner and outer hash states, computed once: each token copies them
        # (half the cost of hmac.new, which keys two fresh hashes every time).
        secret = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self._keyed = hmac.new(secret, None, hashlib.sha256)

    def token(self, execution_id: str, attempt: int) -> str:
        """The token of one attempt: 256 bits, URL-safe base64 without padding (43 characters)."""
        mac = self._keyed.copy()
        mac.update(f"{execution_id}\x00{attempt}".encode())
        digest = mac.digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def attempt_of(self, execution_id: str, token: str, attempts: int, claimed: int = 0) -> int:
        """The attempt (1..attempts) whose token `token` is, or 0 if it is none of them.

        With `claimed` (the attempt a report names), only that attempt's token counts.
        """
        given = token.encode("utf-8", "surrogatepass")
        candidates = [claimed] if claimed else range(attempts, 0, -1)
        for number in candidates:
            if 1 <= number <= attempts and hmac.compare_digest(
                given, self.token(execution_id, number).encode("ascii")
            ):
                return number
        return 0
