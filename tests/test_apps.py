"""restartbench.apps: the apps build from source and serve their routes under the real `wasmtime serve`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import http_get

from restartbench import apps, hosts, tools

TAGS = {"hello": "a", "hello-b": "b", "pyhello": "py"}
HAVE_COMPONENTIZE_PY = importlib.util.find_spec("componentize_py") is not None


def _needs(name: str) -> None:
    if apps.app_spec(name).builder == "componentize-py" and not HAVE_COMPONENTIZE_PY:
        pytest.skip("componentize-py is not installed (`make venv` installs it)")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("apps")


@pytest.fixture(scope="module")
def built(out_dir) -> dict[str, Path]:
    """Every app whose build tool is installed, built into a private dir."""
    names = [n for n in apps.APPS if HAVE_COMPONENTIZE_PY or apps.app_spec(n).builder != "componentize-py"]
    return {name: apps.build(name, out_dir) for name in names}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str]:
    """One GET on a fresh connection: (status, body)."""
    return http_get(port, path, timeout)


@contextlib.contextmanager
def serve(wasm: Path, flags: tuple[str, ...], log: Path, ready_timeout: float = 30.0):
    """Run `wasmtime serve` (cold: no compile cache) on a free loopback port; yield (port, first-response s)."""
    port = _free_port()
    argv = [str(tools.wasmtime()), "serve", "--addr", f"127.0.0.1:{port}", "-C", "cache=n", *flags, str(wasm)]
    with open(log, "wb") as logf:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = t0 + ready_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"wasmtime serve exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                get(port, "/", timeout=ready_timeout)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"wasmtime serve did not answer in {ready_timeout} s: {log.read_text()[-2000:]}")
                time.sleep(0.01)
        yield port, time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module", params=list(apps.APPS))
def served(request, built, tmp_path_factory):
    name = request.param
    _needs(name)
    log = tmp_path_factory.mktemp("serve") / f"{name}.log"
    flags = hosts.get("wasmtime").app_options(apps.app_spec(name)).get("serve_flags", ())
    with serve(built[name], flags, log) as (port, first_s):
        yield name, port, first_s


def test_root_answers_with_the_variant_body(served):
    name, port, first_s = served
    assert first_s < 15
    body = f"hello from restartbench ({TAGS[name]})\n"
    assert get(port, "/") == (200, body)
    assert get(port, "/?q=1") == (200, body)


def test_sleep_holds_the_request(served):
    name, port, _ = served
    t = time.monotonic()
    status, body = get(port, "/sleep?ms=300")
    elapsed = time.monotonic() - t
    assert (status, body) == (200, f"slept 300 ms ({TAGS[name]})\n")
    assert 0.3 <= elapsed < 1.5
    assert get(port, "/sleep?x=1&ms=0") == (200, f"slept 0 ms ({TAGS[name]})\n")


@pytest.mark.parametrize("query", ["", "?ms=", "?ms=abc", "?ms=-5", "?other=1"])
def test_sleep_without_a_valid_ms_is_400(served, query):
    _, port, _ = served
    status, body = get(port, "/sleep" + query)
    assert status == 400 and "ms=" in body


@pytest.mark.parametrize("path", ["/nope", "/sleepy", "/sleep/1", "//"])
def test_unknown_path_is_404(served, path):
    assert get(served[1], path)[0] == 404


def test_components_import_exactly_their_wasi_version(built):
    assert {apps.app_spec(n).wasi_version for n in ("hello", "hello-b")} == {"0.2.0"}
    for name, wasm in built.items():
        wit = subprocess.run([str(tools.wasm_tools()), "component", "wit", str(wasm)],
                             capture_output=True, text=True, check=True).stdout
        refs = re.findall(r"^  (import|export) (wasi:[\w-]+/[\w-]+)@([\d.]+);$", wit, re.M)
        assert [r for r in refs if r[0] == "export"] == [("export", "wasi:http/incoming-handler", "0.2.0")]
        imports = {version for kind, _, version in refs if kind == "import"}
        assert imports == {apps.app_spec(name).wasi_version}, (name, refs)


def test_build_is_skipped_when_up_to_date_and_redone_when_a_source_changes(built, out_dir):
    wasm = built["hello"]
    before = wasm.stat()
    assert apps.is_up_to_date("hello", out_dir)
    assert apps.build("hello", out_dir) == wasm
    assert (wasm.stat().st_ino, wasm.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    src = apps.app_spec("hello").source / "hello.wat.in"
    orig = src.stat()
    try:
        past = before.st_mtime_ns - 10_000_000_000   # as if built 10 s ago, then the source touched
        os.utime(wasm, ns=(past, past))
        os.utime(src)
        assert not apps.is_up_to_date("hello", out_dir)
        assert apps.build("hello", out_dir) == wasm
        assert wasm.stat().st_ino != before.st_ino
        assert apps.is_up_to_date("hello", out_dir)
    finally:
        os.utime(src, ns=(orig.st_atime_ns, orig.st_mtime_ns))

    ino = wasm.stat().st_ino
    apps.build("hello", out_dir, force=True)
    assert wasm.stat().st_ino != ino
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{n}.wasm" for n in built)


def test_unknown_app_is_a_clear_error(tmp_path):
    with pytest.raises(KeyError, match=r"unknown app 'nope'; known apps: hello, hello-b, pyhello"):
        apps.app_spec("nope")
    with pytest.raises(apps.UnknownApp, match="known apps"):
        apps.build("nope", tmp_path)
    assert not list(tmp_path.iterdir())


def test_registry_describes_every_app():
    assert set(apps.APPS) == set(TAGS)
    for name, spec in apps.APPS.items():
        assert spec.name == name and spec.description
        assert (spec.source / spec.template).is_file()
        assert all(world.startswith("wasi:") for world in spec.imports)
    assert hosts.get("wasmtime").app_options(apps.app_spec("pyhello")) == {"serve_flags": ("-S", "cli")}
    assert hosts.get("wasmtime").app_options(apps.app_spec("hello")) == {}


def test_template_errors_are_build_errors():
    assert apps.render("{{TAG}}:{{TAG_LEN}}", {"TAG": "ab"}) == "ab:2"
    with pytest.raises(apps.AppBuildError, match="no value"):
        apps.render("{{MISSING}}", {"TAG": "a"})
    with pytest.raises(apps.AppBuildError, match="must match"):
        apps.render("{{TAG}}", {"TAG": 'a"b'})


def test_a_broken_source_is_a_build_error_naming_the_step_and_the_fix(tmp_path):
    spec = apps.app_spec("hello")
    src = tmp_path / "src"
    shutil.copytree(spec.source, src)
    (src / spec.template).write_text("(module (func $f (call $missing)))")
    broken = dataclasses.replace(spec, source=src)
    (tmp_path / "work").mkdir()
    with pytest.raises(apps.AppBuildError, match=r"(?s)component embed.*failed.*what to do: fix .*hello\.wat\.in"):
        apps._BUILDERS[broken.builder](broken, tmp_path / "work", tmp_path / "out.wasm")
