"""Evidence for inspectors: receipt inclusion proofs that verify without trusting our API."""
