"""CLI clients of the HTTP API: `submit`, `status`, `history`, `dead-letters`.

`submit` sends files as they are (the hub is the judge of their content),
a few at a time, and ends with a summary. Submissions are idempotent, so
running it again after an interruption is safe: what was stored comes back
as "repeated".
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from tradehub.spreadsheets import MEDIA_TYPE as SPREADSHEET


class ClientError(Exception):
    """The hub could not be reached, or refused the caller; the message says which."""


def wait_until_healthy(url: str, alive, timeout: float = 60) -> bool:
    """Poll `url`/healthz until it answers 200 (True), `alive()` turns false or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _client(url: str, token: str, concurrency: int = 4) -> httpx.Client:
    if not token:
        raise ClientError("no token: pass --token or set TRADEHUB_TOKEN (see: tradehub token issue)")
    return httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                        timeout=30, limits=httpx.Limits(max_connections=concurrency))


def _get(client: httpx.Client, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach {client.base_url}: {error}") from None
    if response.status_code != 200:
        raise ClientError(_problem_text(response))
    return response.json()


def _accepted(client: httpx.Client, path: str) -> dict[str, Any]:
    """POST an admin's request that a worker carries out later: the 202's body, or ClientError naming why not."""
    try:
        response = client.post(path)
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach {client.base_url}: {error}") from None
    if response.status_code != 202:
        raise ClientError(_problem_text(response))
    return response.json()


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    lines = [f"{response.status_code} {body.get('title', '')}: {body.get('detail', '')}".rstrip(": ")]
    lines += [f"  {error['cell']}: {error['message']} ({error['path']})" if error.get("cell")
              else f"  {error['path']}: {error['message']}" for error in body.get("errors") or ()]
    return "\n".join(lines)


def _media_type(path: Path) -> str:
    """A declaration file is JSON, or a spreadsheet of `tradehub template` (.xlsx)."""
    return SPREADSHEET if path.suffix.lower() == ".xlsx" else "application/json"


def submit(files: Sequence[Path], *, url: str, token: str, concurrency: int) -> int:
    """Send each file, `concurrency` at a time; exit 2 if any failed to arrive, 1 if any was rejected."""
    outcomes: Counter[str] = Counter()
    rejected: list[str] = []
    with _client(url, token, concurrency) as client:

        def send(path: Path) -> tuple[Path, str, str]:
            try:
                body = path.read_bytes()
            except OSError as error:
                return path, "rejected", f"cannot read: {error.strerror}"
            try:
                response = client.post("/v1/declarations", content=body, headers={"Content-Type": _media_type(path)})
            except httpx.HTTPError as error:
                return path, "failed", f"cannot reach {url}: {error}"
            if response.status_code in (200, 201):
                resource = response.json()
                outcome = "accepted" if response.status_code == 201 else "repeated"
                return path, outcome, f"{resource['id']} {resource['status']}"
            if response.status_code == 401:
                return path, "failed", _problem_text(response)
            return path, "rejected", _problem_text(response)

        with ThreadPoolExecutor(concurrency) as pool, tqdm(total=len(files), unit="file",
                                                           disable=None, file=sys.stderr) as bar:
            for path, outcome, detail in pool.map(send, files):
                outcomes[outcome] += 1
                bar.update()
                if outcome in ("rejected", "failed"):
                    rejected += [f"{path}: {line}" for line in detail.splitlines()]
                else:
                    tqdm.write(f"{path}: {outcome} {detail}")
    for line in rejected:
        print(line)
    print(f"{outcomes['accepted']} accepted, {outcomes['repeated']} repeated, "
          f"{outcomes['rejected']} rejected" + (f", {outcomes['failed']} failed" if outcomes["failed"] else ""))
    if outcomes["failed"]:
        return 2
    return 1 if outcomes["rejected"] else 0


_CANONICAL_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REFERENCE_MATCHES = 20  # the declarations a reference is looked up among: more than one is already ambiguous


def declaration_id_of(client: httpx.Client, wanted: str, declarant: str | None) -> str:
    """The id `wanted` names: a declaration id as it is, else a trader's reference, looked up through
    `GET /v1/declarations?reference=` among the declarations the token may see. A trader's token sees only its
    own, so it needs no declarant; for others a reference used by several declarants needs `declarant`.
    ClientError when nothing, or more than one declaration, answers to it."""
    if _CANONICAL_ID.fullmatch(wanted):  # only the id's written form: 32 hex digits may well be a reference
        return wanted.lower()
    params = {"reference": wanted, "limit": str(REFERENCE_MATCHES)}
    if declarant:
        params["declarant"] = declarant
    items = _get(client, "/v1/declarations", params)["items"]
    whose = f" of declarant {declarant}" if declarant else ""
    if not items:
        raise ClientError(f"no declaration with the reference {wanted!r}{whose} that this token may see "
                          "(a reference is the declarant's own; an id is a UUID)")
    if len(items) > 1:
        declarants = ", ".join(sorted({item["declarant"] for item in items}))
        raise ClientError(f"the reference {wanted!r} is used by several declarants ({declarants}): "
                          "name one with --declarant USCC, or give the declaration's id")
    return items[0]["id"]


def status(wanted: str, *, url: str, token: str, declarant: str | None = None) -> int:
    """Print a declaration's overall status, its holds, and a table of its status at each agency."""
    with _client(url, token) as client:
        resource = _get(client, f"/v1/declarations/{declaration_id_of(client, wanted, declarant)}")
    print(f"{resource['kind']} {resource['reference']}  declarant {resource['declarant']}")
    print(f"id {resource['id']}  version {resource['version']}  status {resource['status'].upper()}")
    if resource["holds"]:
        print(f"held by alert(s): {', '.join(resource['holds'])}")
    for agency, failure in resource.get("dispatch_failures", {}).items():
        print(f"dispatch to {agency} waits since {failure['since']} (version {failure['version']}): {failure['reason']}")
    rows = [("AGENCY", "STATUS", "CODE", "UPDATED", "WHY ROUTED")]
    rows += [(name, state["status"], state["code"], state["updated_at"], state["reason"])
             for name, state in resource["agencies"].items()]
    _table(rows)
    return 0


def history(wanted: str, *, url: str, token: str, declarant: str | None = None) -> int:
    """Print a declaration's events as a table, one line each."""
    with _client(url, token) as client:
        body = _get(client, f"/v1/declarations/{declaration_id_of(client, wanted, declarant)}/history")
    rows = [("VERSION", "TIME", "EVENT", "DETAILS")]
    for event in body["events"]:
        details = {k: v for k, v in event.items() if k not in ("type", "version", "time", "document")}
        rows.append((str(event["version"]), event["time"], event["type"], _summary(details)))
    _table(rows)
    return 0


def _summary(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        if key == "routes":
            value = ", ".join(value)
        elif key == "content_hash":
            value = value[:12]
        if value not in ("", None, {}, []):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def dead_letters(*, url: str, token: str, agency: str | None, code: str | None, state: str | None,
                 limit: int) -> int:
    """Print dead letters, newest first, one line each (admins only), up to `limit`, following the pages."""
    rows = [("ID", "AGENCY", "CODE", "REFUSED AT", "DELIVERIES", "REPLAY", "REASON")]
    cursor: str | None = None
    with _client(url, token) as client:
        while len(rows) - 1 < limit:
            params = {key: value for key, value in (("agency", agency), ("code", code), ("state", state),
                                                    ("cursor", cursor)) if value}
            params["limit"] = str(min(500, limit - (len(rows) - 1)))
            page = _get(client, "/v1/dead-letters", params)
            rows += [(item["id"], item["agency"], item["code"], item["refused_at"], str(item["deliveries"]),
                      item["replay"]["state"], item["reason"][:80]) for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    if len(rows) == 1:
        print("no dead letters")
        return 0
    _table(rows)
    return 0


def dead_letter(letter_id: str, *, url: str, token: str) -> int:
    """Print one dead letter: what it is, why it was refused, its replays, and its body."""
    with _client(url, token) as client:
        letter = _get(client, f"/v1/dead-letters/{letter_id}")
    _describe(letter)
    print()
    print(letter["body"] if letter["body"] is not None else "(the body does not open with this hub's cipher key)")
    return 0


def replay_dead_letter(letter_id: str, *, url: str, token: str) -> int:
    """Ask for a replay; the consume worker runs it within about a second (`dead-letters show` tells the outcome)."""
    with _client(url, token) as client:
        accepted = _accepted(client, f"/v1/dead-letters/{letter_id}/replay")
    print(f"replay of {letter_id} {accepted['replay']['state']}")
    return 0


def _describe(letter: dict[str, Any]) -> None:
    replay = letter["replay"]
    print(f"dead letter {letter['id']}  {letter['agency']}  {letter['code']}")
    print(f"reason      {letter['reason']}")
    print(f"declaration {letter['declaration_id'] or '-'}")
    print(f"refused     {letter['refused_at']} (last {letter['last_refused_at']}, {letter['deliveries']} deliveries)")
    for name, value in sorted(letter["headers"].items()):
        print(f"header      {name}: {value}")
    print(f"body        {letter['body_bytes']} bytes" + ("" if letter["body_complete"] else ", only the start kept"))
    outcome = f" -> {replay['code']}: {replay['reason']}" if replay["code"] else ""
    print(f"replay      {replay['state']}, {replay['replays']} run{outcome}")


def parked_dispatch(*, url: str, token: str, agency: str | None) -> int:
    """Print the parked dispatches (admins only): which declaration, which agency, since when and why."""
    with _client(url, token) as client:
        items = _get(client, "/v1/dispatch/parked", {"agency": agency} if agency else None)["items"]
    if not items:
        print("no parked dispatch")
        return 0
    rows = [("DECLARATION", "AGENCY", "VERSION", "WAITING", "FAILED AT", "ATTEMPTS", "REASON")]
    rows += [(item["declaration_id"], item["agency"], str(item["failed_version"]),
              ",".join(map(str, item["waiting_versions"])), item["failed_at"], str(item["attempts"]),
              item["reason"][:100]) for item in items]
    _table(rows)
    return 0


def retry_dispatch(declaration_id: str, agency: str, *, url: str, token: str) -> int:
    """Ask for a parked dispatch to be tried now; the dispatch worker does within about a second."""
    with _client(url, token) as client:
        _accepted(client, f"/v1/declarations/{declaration_id}/dispatch/{agency}/retry")
    print(f"retry of {declaration_id} to {agency} scheduled; `tradehub dispatch parked` shows what remains")
    return 0


def attach(wanted: str, path: Path, *, url: str, token: str, declarant: str | None = None) -> int:
    """Attach a supporting document to a declaration (the hub judges its type by content); print what was
    recorded. Exit 1 if the hub refused it; a repeat of the same content is not an error."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None
    with _client(url, token) as client:
        declaration_id = declaration_id_of(client, wanted, declarant)
        try:
            response = client.post(f"/v1/declarations/{declaration_id}/documents", files={"file": (path.name, data)},
                                   timeout=120)
        except httpx.HTTPError as error:
            raise ClientError(f"cannot reach {client.base_url}: {error}") from None
    if response.status_code not in (200, 201):
        print(f"{path}: {_problem_text(response)}", file=sys.stderr)
        return 1
    body = response.json()
    outcome = "attached" if response.status_code == 201 else "already attached"
    print(f"{outcome}: {body['filename']} ({body['media_type']}, {body['size']} bytes)")
    print(f"sha256 {body['sha256']}  version {body['version']}  {body['href']}")
    return 0
