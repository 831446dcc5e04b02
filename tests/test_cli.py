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
    (["--role", "officer", "--agency", "police"], "'police' is not an agency: an officer token needs --agency, one of"),
    (["--role", "officer"], "an officer token needs --agency, one of customs"),
    (["--role", "officer", "--agency", "customs", "--party", samples.TRADER_A], "takes no --party"),
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
    assert f"no demo secret at {tmp_path / 'secret'}" in result.stderr  # where it looked, absolute
    assert "tradehub serve --demo" in result.stderr and "TRADEHUB_DATA_DIR" in result.stderr


def test_serve_without_demo_points_to_the_demo_secret_it_would_not_use(tmp_path: Path):
    """A newcomer's second mistake: the demo made a secret, and `serve` run again without --demo."""
    import os

    from .racing import free_port

    (tmp_path / "secret").write_text("d" * 64)
    env = dict(os.environ, TRADEHUB_DATA_DIR=str(tmp_path))
    env.pop("TRADEHUB_SECRET", None)
    result = tradehub("serve", "--port", str(free_port()), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'secret'} holds a local demo's secret: pass --demo to use it" in result.stderr
    assert not (tmp_path / "nats").exists()


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


# ---- the help a newcomer reads -------------------------------------------------------------------------------

def _options(parser, path: tuple[str, ...] = ("tradehub",)):
    """Every argument of every command, with the command it belongs to."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _options(command, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_option_of_every_command_has_a_one_line_help_that_states_its_default():
    """Walks the whole parser: an argument without help, or with a default its help does not state, fails.
    A flag (store_true/store_false) is off unless given, and says what it does."""
    from tradehub.cli import _parser

    missing, silent = [], []
    for command, action in _options(_parser()):
        name = "/".join(action.option_strings) or action.dest
        if not action.help or "\n" in action.help:
            missing.append(f"{command} {name}")
        elif action.nargs != 0 and action.default not in (None, [], ()) and "default" not in action.help:
            silent.append(f"{command} {name} (default {action.default!r})")
    assert missing == [] and silent == []


def test_serve_help_describes_host_port_and_access_log():
    result = tradehub("serve", "--help")
    text = " ".join(result.stdout.split())
    assert "--host HOST address to listen on" in text and "(default 127.0.0.1)" in text
    assert "--port PORT TCP port to listen on" in text and "(default 8000)" in text
    assert "--access-log log every HTTP request" in text
    submit = " ".join(tradehub("submit", "--help").stdout.split())
    assert "--concurrency CONCURRENCY files sent at the same time (default 8)" in submit
    validate = " ".join(tradehub("validate", "--help").stdout.split())
    assert "FILE declaration JSON files to check" in validate


@pytest.mark.parametrize("command", ["status", "history"])
def test_status_and_history_help_say_a_reference_will_do(command: str):
    text = " ".join(tradehub(command, "--help").stdout.split())
    assert "ID|REFERENCE" in text and "the reference its declarant gave it" in text and "--declarant USCC" in text


# ---- status and history by the trader's reference, against the API in process ------------------------------

@pytest.fixture
def hub_api(hub, monkeypatch):
    """`tradehub status`/`history` run in this process, their HTTP client the API app over `hub`."""
    import contextlib

    from fastapi.testclient import TestClient

    from tradehub import client
    from tradehub.api.app import create_app

    app = create_app(hub)

    def connect(url: str, token: str, concurrency: int = 4):
        return contextlib.nullcontext(TestClient(app, headers={"Authorization": f"Bearer {token}"}))

    monkeypatch.setattr(client, "_client", connect)
    return hub


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from tradehub.cli import main

    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def token(role: str, **claims: str) -> str:
    from tradehub.auth import issue_token

    from .conftest import SECRET

    return issue_token(SECRET, role, **claims)


def test_status_and_history_take_a_traders_reference(hub_api, capsys):
    declaration = hub_api.declarations.submit(samples.goods("MY-REF-1")).declaration
    hub_api.declarations.submit(samples.goods("MY-REF-1", declarant=samples.TRADER_B))  # the same words, another's
    hub_api.runner.catch_up()
    trader = token("trader", party=samples.TRADER_A)
    status, out, err = run_cli(capsys, "status", "MY-REF-1", "--token", trader)
    assert status == 0, err
    assert f"goods MY-REF-1  declarant {samples.TRADER_A}" in out and f"id {declaration.id}" in out
    status, out, err = run_cli(capsys, "history", "MY-REF-1", "--token", trader)
    assert status == 0 and "Submitted" in out
    by_id = run_cli(capsys, "status", str(declaration.id), "--token", trader)
    assert by_id[0] == 0 and f"id {declaration.id}" in by_id[1]


def test_a_reference_several_declarants_use_needs_declarant_for_an_officer_or_admin(hub_api, capsys):
    ours = hub_api.declarations.submit(samples.goods("SHARED-REF")).declaration
    hub_api.declarations.submit(samples.goods("SHARED-REF", declarant=samples.TRADER_B))
    hub_api.runner.catch_up()
    admin = token("admin")
    status, _, err = run_cli(capsys, "status", "SHARED-REF", "--token", admin)
    assert status == 2 and "'SHARED-REF' is used by several declarants" in err
    assert f"{samples.TRADER_A}, {samples.TRADER_B}" in err and "--declarant USCC" in err
    status, out, err = run_cli(capsys, "status", "SHARED-REF", "--declarant", samples.TRADER_A, "--token", admin)
    assert status == 0 and f"id {ours.id}" in out, err
    officer = token("officer", agency="customs")
    status, out, _ = run_cli(capsys, "history", "SHARED-REF", "--declarant", samples.TRADER_A, "--token", officer)
    assert status == 0 and "Submitted" in out


@pytest.mark.parametrize("args, message", [
    (["NO-SUCH-REF"], "no declaration with the reference 'NO-SUCH-REF' that this token may see"),
    (["THEIRS-1"], "no declaration with the reference 'THEIRS-1' that this token may see"),  # another trader's
    (["THEIRS-1", "--declarant", samples.TRADER_B], f"'THEIRS-1' of declarant {samples.TRADER_B} that this token"),
])
def test_a_reference_the_token_cannot_see_is_named_never_guessed(hub_api, capsys, args: list[str], message: str):
    hub_api.declarations.submit(samples.goods("THEIRS-1", declarant=samples.TRADER_B))
    hub_api.runner.catch_up()
    status, out, err = run_cli(capsys, "status", *args, "--token", token("trader", party=samples.TRADER_A))
    assert status == 2 and message in err and out == ""
