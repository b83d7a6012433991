"""A SQLModel base with its own registry, so the API's tables have their own MetaData."""

from __future__ import annotations

import time

from sqlalchemy import MetaData
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

api_metadata = MetaData()


class ApiModel(SQLModel, registry=registry(metadata=api_metadata)):
    pass


def now() -> float:
    return time.time()
