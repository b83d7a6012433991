"""The ledger's vocabulary in Python: identifiers and keys as the contracts derive them, the
contracts' constants, and EIP-712 signing of relayed actions."""
