"""`tradehub bench messages`: agency messages built per second, against raw lxml.

For each round it times, on the same declarations:

- the hub: `messages_for` (the path render and dispatch use), which maps each
  declaration change to its agencies' messages, validates each against the
  hub's XSD with lxml and serialises it;
- raw lxml: building exactly the same trees from a flat list of
  (parent, tag, text, attributes) and serialising them the same way: the floor
  for any mapping that produces these messages.

The ratio is hub / raw, taken within each round (both timed back to back,
in alternating order) and reported as the median over rounds, since this
machine's speed drifts. The collector is paused while timing either.

Signing (docs/signing.md) is timed in the same rounds:

- outbound, map + validate + sign: `messages_for` then the hub's ECDSA P-256
  signature on every message, against the same raw lxml build;
- inbound, verify + gate + read: the simulated agencies' signed answers to
  those messages, each taken through everything the inbox does before it
  applies one (followers.inbox: the gate's parse, the signature against the
  agency's registered certificates looked up as the inbox looks them up, the
  schema, and the agency's reader), against a raw lxml parse of the very same
  bytes. The readers get no declaration documents to name error pointers by
  (that is a read of the store, not of the message).

The answers are timed twice: signed with the simulated agencies' own keys
(ECDSA P-256), and the same answers signed with RSA-2048 keys instead (the
other kind the profile admits, whose verification is cheaper and signing
dearer), each against a raw parse of its own bytes.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from statistics import median
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from adapters.keyring import Registry, fresh_signer, hub_signer
from adapters.messages import Change, change_of
from adapters.outbound import MAPPINGS, messages_for
from adapters.signing import Signer, verify
from followers.inbox import READERS, in_notices
from hub.declarations import Declarations
from simulators.agencies import Keys, answer
from tradehub.bench.common import IN_MEMORY, synthetic_goods
from tradehub.bootstrap import Settings, routing_rules

Recipe = list[tuple[int, str, str | None, dict[str, str], dict[str | None, str] | None]]


def run_messages(args: argparse.Namespace) -> int:
    rules = routing_rules(Settings.from_env())
    app = Declarations(IN_MEMORY, routing=rules)
    documents = synthetic_goods(args.count, uuid.uuid4().hex[:8])
    changes = [change_of(app.prepare_submission(document).collect_events()[0], None) for document in documents]
    agencies = list(MAPPINGS)
    recipes = [_recipe(message.body) for change in changes for message in messages_for(change, rules, agencies)]
    sizes = [len(_serialise(_rebuild(recipe))) for recipe in recipes[:200]]
    with tempfile.TemporaryDirectory() as keys_dir:  # keys made for the run: none is read per message
        signer = hub_signer(Path(keys_dir))
        keys = Keys.load(Path(keys_dir), agencies)
        registry = Registry(Path(keys_dir))
        answers = _answers(changes, rules, agencies, signer, keys)
        rsa_answers = _signed_again(answers, registry, Registry(Path(keys_dir) / "rsa"), "RSA-2048")
        rates: dict[str, list[float]] = {name: [] for name in
                                         ("hub", "raw", "signed", "parse", "verify", "rsa parse", "rsa verify")}
        ratios: dict[str, list[float]] = {name: [] for name in ("hub", "signed", "verify", "rsa verify")}
        for round_number in range(args.rounds):
            # Each round times all, back to back, in alternating order: the machine's speed drifts between
            # rounds, so the ratios are taken within a round and the median of those is reported.
            measure = {"hub": lambda: _timed(lambda: _hub(changes, rules, agencies)),
                       "raw": lambda: _timed(lambda: _raw(recipes)),
                       "signed": lambda: _timed(lambda: _hub(changes, rules, agencies, signer)),
                       "parse": lambda: _timed(lambda: _parse(answers)),
                       "verify": lambda: _timed(lambda: _verify(answers, registry)),
                       "rsa parse": lambda: _timed(lambda: _parse(rsa_answers[0])),
                       "rsa verify": lambda: _timed(lambda: _verify(*rsa_answers))}
            order = list(measure) if round_number % 2 else list(reversed(measure))
            seconds = {name: measure[name]() for name in order}
            for name in ("hub", "raw", "signed"):
                rates[name].append(len(recipes) / seconds[name])
            for name in ("parse", "verify", "rsa parse", "rsa verify"):
                rates[name].append(len(answers) / seconds[name])
            ratios["hub"].append(seconds["raw"] / seconds["hub"])
            ratios["signed"].append(seconds["raw"] / seconds["signed"])
            ratios["verify"].append(seconds["parse"] / seconds["verify"])
            ratios["rsa verify"].append(seconds["rsa parse"] / seconds["rsa verify"])
    hub, raw = median(rates["hub"]), median(rates["raw"])
    print(f"messages: {len(changes)} goods declarations -> {len(recipes)} messages to {', '.join(agencies)}, "
          f"{args.rounds} rounds; medians of the rounds")
    print(f"message size                 {median(sizes):9.0f} bytes (median), "
          f"{median(len(recipe) for recipe in recipes):.0f} elements")
    print(f"raw lxml build + serialise   {raw:9.0f} messages/s")
    print(f"hub map + validate + write   {hub:9.0f} messages/s   {median(ratios['hub']):6.1%} of raw")
    print(f"hub map + validate + sign    {median(rates['signed']):9.0f} messages/s   "
          f"{median(ratios['signed']):6.1%} of raw build (target 50 %)")
    print(f"answers: {len(answers)} signed by the simulated agencies (ECDSA P-256), "
          f"{median(len(body) for _, body in answers):.0f} bytes (median)")
    print(f"raw lxml parse               {median(rates['parse']):9.0f} answers/s")
    print(f"hub verify + gate + read     {median(rates['verify']):9.0f} answers/s    "
          f"{median(ratios['verify']):6.1%} of raw parse (target 50 %)")
    print(f"the same answers signed with RSA-2048, "
          f"{median(len(body) for _, body in rsa_answers[0]):.0f} bytes (median)")
    print(f"raw lxml parse               {median(rates['rsa parse']):9.0f} answers/s")
    print(f"hub verify + gate + read     {median(rates['rsa verify']):9.0f} answers/s    "
          f"{median(ratios['rsa verify']):6.1%} of raw parse (target 50 %)")
    return 0


def _hub(changes: list[Change], rules: Any, agencies: list[str], signer: Signer | None = None) -> None:
    """What dispatch builds (followers.dispatch `build`): the messages, each signed as soon as it is built."""
    for change in changes:
        messages = messages_for(change, rules, agencies)
        if signer is not None:
            messages = [replace(message, body=signer.sign(message.body)) for message in messages]


def _answers(changes: list[Change], rules: Any, agencies: list[str], signer: Signer, keys: Keys
             ) -> list[tuple[str, bytes]]:
    """(agency, body) of every signed answer the simulated agencies give the hub's signed messages."""
    answers = []
    for change in changes:
        for message in messages_for(change, rules, agencies):
            headers = {"Tradehub-Declaration-Id": message.declaration_id, "Tradehub-Message": message.name}
            answers.extend((message.agency, reply.body)
                           for reply in answer(message.agency, signer.sign(message.body), headers, keys=keys))
    return answers


def _parse(answers: list[tuple[str, bytes]]) -> None:
    for _, body in answers:
        etree.fromstring(body)


def _signed_again(answers: list[tuple[str, bytes]], registry: Registry, other: Registry, kind: str
                  ) -> tuple[list[tuple[str, bytes]], Registry]:
    """The same answers, each signed instead by a key of `kind` made for its agency and registered in `other`."""
    signers = {agency: fresh_signer(f"bench {agency}", kind) for agency in {agency for agency, _ in answers}}
    for agency, signer in signers.items():
        other.register(agency, signer.certificate.public_bytes(Encoding.PEM))
    again = []
    for agency, body in answers:
        content = verify(body, registry.keys_for(agency), signer=agency)
        again.append((agency, signers[agency].sign(etree.tostring(content, xml_declaration=True, encoding="UTF-8"))))
    return again, other


def _no_document(_declaration_id: str) -> None:
    return None


def _verify(answers: list[tuple[str, bytes]], registry: Registry) -> None:
    """What the inbox does with an answer before applying it (followers.inbox `_verified`, then `_read`): the
    gate's parse, the signature against the agency's certificates as of now, the schema, the agency's reader."""
    for agency, body in answers:
        root = verify(body, registry.keys_for(agency), signer=agency)
        if in_notices(root):
            raise AssertionError(f"{agency} answered with a notice; the bench times replies")
        if not READERS[agency](root, _no_document):
            raise AssertionError(f"{agency} answer holds no reply")


def _raw(recipes: list[Recipe]) -> None:
    for recipe in recipes:
        _serialise(_rebuild(recipe))


def _timed(work: Callable[[], None]) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started
    finally:
        gc.enable()


def _recipe(body: bytes) -> Recipe:
    """The tree of a message as a flat list: (parent index, tag, text, attributes, namespaces)."""
    root = etree.fromstring(body)
    index = {root: 0}
    recipe: Recipe = [(-1, root.tag, root.text if len(root) == 0 else None, dict(root.attrib), dict(root.nsmap))]
    for element in root.iterdescendants():
        index[element] = len(recipe)
        text = element.text if len(element) == 0 else None
        recipe.append((index[element.getparent()], element.tag, text, dict(element.attrib), None))
    return recipe


def _rebuild(recipe: Recipe) -> etree._Element:
    _, tag, text, attributes, namespaces = recipe[0]
    root = etree.Element(tag, attributes, nsmap=namespaces)
    root.text = text
    elements = [root]
    sub_element = etree.SubElement
    for parent, tag, text, attributes, _ in recipe[1:]:
        element = sub_element(elements[parent], tag, attributes)
        element.text = text
        elements.append(element)
    return root


def _serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
