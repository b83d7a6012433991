"""GS1 EPCIS 2.0 for partners: capture documents and map them to ledger actions (capture), the
EPCIS records of what plain requests anchor (plain, records), storing events with their operation
(store) and the query interface (query)."""
