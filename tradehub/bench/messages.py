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
"""

from __future__ import annotations

import argparse
import gc
import time
import uuid
from collections.abc import Callable
from statistics import median
from typing import Any

from lxml import etree

from adapters.messages import Change, change_of
from adapters.outbound import MAPPINGS, messages_for
from hub.declarations import Declarations
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
    hub_rates, raw_rates, ratios = [], [], []
    for round_number in range(args.rounds):
        # Each round times both, back to back, in alternating order: the machine's speed drifts between
        # rounds, so the ratio is taken within a round and the median of those is reported.
        measure = {"hub": lambda: _timed(lambda: _hub(changes, rules, agencies)),
                   "raw": lambda: _timed(lambda: _raw(recipes))}
        order = ("hub", "raw") if round_number % 2 else ("raw", "hub")
        seconds = {name: measure[name]() for name in order}
        hub_rates.append(len(recipes) / seconds["hub"])
        raw_rates.append(len(recipes) / seconds["raw"])
        ratios.append(seconds["raw"] / seconds["hub"])
    hub, raw = median(hub_rates), median(raw_rates)
    print(f"messages: {len(changes)} goods declarations -> {len(recipes)} messages to {', '.join(agencies)}, "
          f"{args.rounds} rounds; medians of the rounds")
    print(f"message size                 {median(sizes):9.0f} bytes (median), "
          f"{median(len(recipe) for recipe in recipes):.0f} elements")
    print(f"raw lxml build + serialise   {raw:9.0f} messages/s")
    print(f"hub map + validate + write   {hub:9.0f} messages/s   {median(ratios):6.1%} of raw")
    return 0


def _hub(changes: list[Change], rules: Any, agencies: list[str]) -> None:
    for change in changes:
        messages_for(change, rules, agencies)


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
