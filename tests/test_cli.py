"""`tradehub validate` as a user runs it: a real process, files on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import samples
from .messaging import EXAMPLES

pytestmark = pytest.mark.slow  # every test starts a fresh interpreter, about a second each


def tradehub(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "tradehub.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def write(tmp_path: Path, name: str, document) -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_valid_files_pass_and_show_their_routes(tmp_path: Path):
    good = write(tmp_path, "good.json", samples.goods())
    call = write(tmp_path, "call.json", samples.vessel_call())
    result = tradehub("validate", str(good), str(call))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{good}: valid goods TEST-GOODS-0001, routed to customs, port" in result.stdout
    assert "routed to customs, inspection, port, maritime, border" in result.stdout


def test_each_error_is_one_line_naming_file_path_and_reason(tmp_path: Path):
    document = samples.goods(containers=["HLXU8000015"])
    document["items"][0]["net_kg"] = "9999"
    bad = write(tmp_path, "bad.json", document)
    good = write(tmp_path, "good.json", samples.goods())
    result = tradehub("validate", str(bad), str(good))
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(str(bad))]
    assert lines == [
        f"{bad}: $.containers[0]: 'HLXU8000015' is not a valid ISO 6346 container number: "
        "the check digit is wrong",
        f"{bad}: $.items[0].net_kg: net mass 9999 kg exceeds gross mass 5200.5 kg",
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, reason", [
    ('{"kind": "goods", ', "not JSON: line 1, column 19"),
    ("", "not JSON: line 1, column 1"),
])
def test_malformed_json_gets_a_clean_error(tmp_path: Path, content: str, reason: str):
    path = write(tmp_path, "broken.json", content)
    result = tradehub("validate", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith(f"{path}: {reason}")
    assert "Traceback" not in result.stderr


def test_an_unreadable_file_is_named(tmp_path: Path):
    result = tradehub("validate", str(tmp_path / "nowhere.json"))
    assert result.returncode == 1
    assert f"{tmp_path / 'nowhere.json'}: cannot read: No such file or directory" in result.stdout


def test_a_broken_routing_file_stops_with_a_message(tmp_path: Path):
    import os

    env = dict(os.environ, TRADEHUB_ROUTING_FILE=str(write(tmp_path, "r.toml", "nonsense = [")))
    result = tradehub("validate", str(write(tmp_path, "good.json", samples.goods())), env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("tradehub: ") and "r.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shipped_examples_are_valid():
    examples = sorted(EXAMPLES.glob("*.json"))
    assert examples, f"no examples in {EXAMPLES}"
    result = tradehub("validate", *map(str, examples))
    assert result.returncode == 0, result.stdout
    assert len(result.stdout.splitlines()) == len(examples)


@pytest.mark.parametrize("args, message", [
    (["--role", "trader"], "needs --party"),
    (["--role", "officer", "--agency", "police"], "needs --agency"),
    (["--role", "admin", "--ttl", "soon"], "--ttl must look like"),
    (["--role", "admin", "--ttl", "0s"], "lifetime must be positive"),
])
def test_token_issue_refuses_bad_requests_by_name(tmp_path: Path, args: list[str], message: str):
    import os

    env = dict(os.environ, TRADEHUB_SECRET="s" * 40, TRADEHUB_DATA_DIR=str(tmp_path))
    result = tradehub("token", "issue", *args, env=env)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_token_issue_without_any_secret_says_what_to_do(tmp_path: Path):
    import os

    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path))
    env.pop("TRADEHUB_SECRET", None)
    result = tradehub("token", "issue", "--role", "admin", env=env)
    assert result.returncode == 2 and "TRADEHUB_SECRET is not set" in result.stderr


def test_a_bad_body_cap_setting_is_refused(tmp_path: Path):
    import os

    env = dict(os.environ, TRADEHUB_MAX_BODY_BYTES="lots")
    result = tradehub("validate", str(write(tmp_path, "good.json", samples.goods())), env=env)
    assert result.returncode == 2 and "TRADEHUB_MAX_BODY_BYTES" in result.stderr


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_serve_refuses_a_number_of_workers_that_is_not_one_or_more(workers: str):
    result = tradehub("serve", "--workers", workers)
    assert result.returncode == 2 and "--workers" in result.stderr and "not a number of processes" in result.stderr


def test_render_writes_one_file_per_message_for_routed_agencies_only(tmp_path: Path):
    source = write(tmp_path, "goods.json", samples.goods())
    result = tradehub("render", str(source), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert "customs-declaration.xml" in written
    assert not any(name.startswith(("border-", "maritime-")) for name in written)  # not routed
    assert result.stdout.split() == [str(tmp_path / "out" / name) for name in written]


def test_render_prints_the_bytes_dispatch_would_send(tmp_path: Path):
    from lxml import etree

    from adapters.messages import change_of
    from adapters.outbound import messages_for
    from hub.declarations import Declarations

    document = samples.goods()
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "render", str(write(tmp_path, "g.json", document)),
                             "--agency", "customs"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    app = Declarations({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    (expected,) = messages_for(change_of(app.prepare_submission(document).collect_events()[0], None), app.routing,
                               ["customs"])

    def timeless(body: bytes) -> bytes:  # the issue time is the event's, and this event happens now
        root = etree.fromstring(body)
        for element in root.iter("{*}DateTimeString"):
            element.text = "20260101000000Z"
        return etree.tostring(root)

    assert result.stdout.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    assert timeless(result.stdout) == timeless(expected.body)
    assert expected.message_id.encode() in result.stdout and b"customs-declaration.xml" in result.stderr


@pytest.mark.parametrize("content, args, message", [
    (samples.goods(), ["--agency", "border"], "not routed to border; routed to customs"),
    (samples.goods(items=[]), [], "$.items: must not be empty"),
    ("{not json", [], "not JSON"),
])
def test_render_refuses_what_it_cannot_render(tmp_path: Path, content, args: list[str], message: str):
    result = tradehub("render", str(write(tmp_path, "d.json", content)), *args)
    assert result.returncode == 1 and message in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_render_names_a_missing_file(tmp_path: Path):
    result = tradehub("render", str(tmp_path / "nowhere.json"))
    assert result.returncode == 1 and "nowhere.json: cannot read" in result.stderr


def test_dispatch_needs_a_broker_and_refuses_one_it_cannot_use(tmp_path: Path):
    import os

    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path))
    env.pop("TRADEHUB_BROKER_URL", None)
    result = tradehub("worker", "dispatch", env=env)
    assert result.returncode == 2 and "needs TRADEHUB_BROKER_URL" in result.stderr
    result = tradehub("worker", "dispatch", env=dict(env, TRADEHUB_BROKER_URL="kafka://localhost:9092"))
    assert result.returncode == 2 and "TRADEHUB_BROKER_URL must be a NATS URL" in result.stderr
    assert "'kafka'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("worker", "dispatch"), ("worker", "consume"), ("agencies", "simulate")])
@pytest.mark.parametrize("url", ["nats://127.0.0.1:1", "amqp://guest:hunter2@127.0.0.1:1/"])
def test_workers_name_a_broker_that_does_not_answer_without_a_traceback(tmp_path: Path, command, url: str):
    import os

    result = tradehub(*command, env=dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path), TRADEHUB_BROKER_URL=url))
    assert result.returncode == 2, result.stderr
    assert "no broker answers at" in result.stderr and "127.0.0.1:1" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["status"], ["history"], ["submit"]])
def test_the_api_clients_say_in_one_line_what_they_lack(tmp_path: Path, command: list[str]):
    """`status`, `history` and `submit` are clients of a running hub: without a token, or with no hub answering,
    each says so on one line and exits 2, never with a traceback."""
    import os

    target = str(write(tmp_path, "g.json", samples.goods())) if command == ["submit"] else "0" * 32
    env = {key: value for key, value in os.environ.items() if key not in ("TRADEHUB_TOKEN", "TRADEHUB_URL")}
    without_token = tradehub(*command, target, env=env)
    assert without_token.returncode == 2, without_token.stderr
    assert without_token.stderr.startswith("tradehub: no token"), without_token.stderr
    unreachable = tradehub(*command, target, "--token", "x", "--url", "http://127.0.0.1:9", env=env)
    assert "Traceback" not in unreachable.stderr, unreachable.stderr
    assert "cannot reach http://127.0.0.1:9" in unreachable.stdout + unreachable.stderr
