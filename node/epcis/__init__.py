"""GS1 EPCIS 2.0: documents and events (models, checks) as rxledger reads and writes them."""
