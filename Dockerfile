# The rxledger image: the API, the indexer and the CLI (docker-compose.yml's deployer, indexer and
# api services). The contracts' compiled artifacts are committed, so no compiler or Node is needed.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/rxledger
# fonts for the PDF reports' non-Latin names
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY node ./node
COPY api ./api
COPY contracts/artifacts ./contracts/artifacts
# editable: node.paths finds the artifacts beside the package, as in a checkout
RUN pip install --no-cache-dir -e . \
    && useradd --uid 10001 --home-dir /srv/rxledger --no-create-home rxledger \
    && mkdir -p var/keystore var/documents deployments \
    && chown -R rxledger:rxledger var deployments
USER rxledger
EXPOSE 8000
CMD ["rxledger", "--help"]
