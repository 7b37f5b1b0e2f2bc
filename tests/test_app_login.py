"""STREAM_DIFFVSR_AUTH: Gradio's own login for the page and its API (issue 21, item 4).

The value is parsed by ``vsr.options.server_logins``; the real app is started in a subprocess on a
free port with a file of logins, and reached through gradio_client with, without and with wrong
credentials."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AuthenticationError

from app_harness import ROOT, AppServer
from media_factory import make_video
from vsr.options import OptionsError, server_logins


def logins(value: str) -> list[tuple[str, str]] | None:
    return server_logins({"STREAM_DIFFVSR_AUTH": value})


def test_no_variable_no_login() -> None:
    assert server_logins({}) is None and logins("  ") is None


def test_one_login_or_a_file_of_them(tmp_path: Path) -> None:
    assert logins("ada:pass:word") == [("ada", "pass:word")]  # the password is everything after the first ':'
    file = tmp_path / "logins.txt"
    file.write_text("# who may use the GPU\nada:first\n\n  bob:second  \n", encoding="utf-8")
    assert logins(str(file)) == [("ada", "first"), ("bob", "second")]


@pytest.mark.parametrize(("value", "message"), [
    ("s3cret", r"^STREAM_DIFFVSR_AUTH has no ':'\. Set it to user:password, or to the path of a readable file"),
    (":s3cret", r"^STREAM_DIFFVSR_AUTH: its value is not user:password \(a user name, ':', then a password"),
    ("ada:", r"^STREAM_DIFFVSR_AUTH: its value is not user:password"),
    ("/run/secrets/missing", r"^STREAM_DIFFVSR_AUTH names no file \(/run/secrets/missing does not exist\)\. Set it"),
])
def test_bad_values_name_the_variable_and_the_fix(value: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message) as caught:
        logins(value)
    assert "s3cret" not in str(caught.value)  # a password is never shown


def test_a_bad_file_names_the_variable_the_file_and_the_fix(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n\n", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"^STREAM_DIFFVSR_AUTH: .*empty\.txt holds no login\. Write one user:"):
        logins(str(empty))
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("ada:first\nbob s3cret\n", encoding="utf-8")
    with pytest.raises(OptionsError, match=r"^STREAM_DIFFVSR_AUTH: line 2 of .*wrong\.txt is not user:password"):
        logins(str(wrong))
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ada:\xff\xfe\n")
    with pytest.raises(OptionsError, match=r"^STREAM_DIFFVSR_AUTH: cannot read .*binary\.txt .*Make it a UTF-8 file"):
        logins(str(binary))


@pytest.mark.slow  # imports the app in a fresh process
def test_the_app_refuses_to_start_with_a_bad_value(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "STREAM_DIFFVSR_AUTH": "s3cret",
           "GRADIO_SERVER_PORT": "1", "STREAM_DIFFVSR_OUTPUT_DIR": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=180)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "app.py: error: STREAM_DIFFVSR_AUTH has no ':'. Set it to user:password, or to the path of a readable file "
        "with one user:password per line.")
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_page_and_its_api_need_the_login(tmp_path: Path, fixture_dir: Path) -> None:
    file = tmp_path / "logins.txt"
    file.write_text("ada:correct horse\nbob:battery:staple\n", encoding="utf-8")
    server = AppServer(base=tmp_path / "app", fixture_dir=fixture_dir, cache_dir=tmp_path / "cache",
                       extra_env={"STREAM_DIFFVSR_AUTH": str(file), "STREAM_DIFFVSR_ENGINE": "bicubic"}).start()
    try:
        clip = make_video(tmp_path / "in.mp4", 32, 24, 25, 5, audio=None)
        with pytest.raises(AuthenticationError):
            Client(server.url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(server.url, auth=("ada", "wrong"), verbose=False)
        for path in ("config", "gradio_api/info"):
            assert httpx.get(server.url + path, timeout=10).status_code == 401
        posted = httpx.post(server.url + "gradio_api/call/plan", json={"data": [None]}, timeout=10)
        assert posted.status_code == 401
        # Docker's health check still sees the app, which answers behind its login.
        health = subprocess.run([sys.executable, str(ROOT / "deploy" / "healthcheck.py"), server.url + "config"],
                                capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stderr
        for login in (("ada", "correct horse"), ("bob", "battery:staple")):
            client = Client(server.url, auth=login, verbose=False, download_files=str(tmp_path / "downloads"))
            plan = client.predict(handle_file(str(clip)), "bicubic", "4x", "", "", 4, "", "h264", 18, True,
                                  api_name="/plan")
            assert "32x24" in plan[0] and "128x96" in plan[0]
    finally:
        server.stop()
    assert "correct horse" not in server.log()
