"""The read path: verification at the counter, provenance and evidence bundles, inspection
reports, alerts and their notifications, all from the read models the indexer keeps."""
