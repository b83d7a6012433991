"""Production network: Hyperledger Besu QBFT validators, their genesis and configs, docker-compose."""
