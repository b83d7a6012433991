"""The write path: a request becomes a plan of contract calls (plan), checked against the rules
(rules), accepted durably (outbox), signed with the organisation's key (keystore) and sent on chain
(submitter)."""
