"""The HTTP edge: every rule a request can break and its problem document, who is calling
(tokens, permissions, throttling, client addresses, e-signature limits), validated identifier fields,
and the audit trail of every request. It imports nothing of the write or read path."""
