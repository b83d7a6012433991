"""The indexer: follows the chain's rxledger events into SQL read models (reorg-safe, restartable,
rebuildable). The chain stays the source of truth; every row here can be rebuilt from it."""
