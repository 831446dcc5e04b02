"""The broker contract as AsyncAPI: what the hub publishes and consumes, per agency and direction.

The document is built from `inbound_consumer`, the durable consumers the
hub really makes (messaging.consumers runs them, the inbox in followers.inbox
applies what they take), so it describes them: same subjects, streams,
durable names and settings. They are declared here as faststream pull
subscribers only to generate the document; at run time the hub's own pull
loop (messaging.broker.consume_batches) drives them, for the reasons and
figures in docs/broker.md. `asyncapi.json` at the repository root is this
document, committed; a test keeps it up to date (regenerate with
`tradehub asyncapi > asyncapi.json`).
"""

from __future__ import annotations

import json
from typing import Any

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from faststream.specification import AsyncAPI

from hub.declarations import AGENCIES

from .broker import (
    DEAD_STREAM,
    INBOUND_STREAM,
    OUTBOUND_STREAM,
    PullConsumer,
    dead_subject,
    inbound_subject,
    outbound_subject,
)

# Each agency's message formats, as the schemas in xsd/ name them.
FORMATS = {
    "customs": ("WCO Data Model 3.6 DEC-DMS:2 (xsd/customs/declaration.xsd)",
                "WCO RES-DMS:2 responses (xsd/customs/response.xsd)"),
    "inspection": ("inspection declaration (xsd/inspection/declaration.xsd)",
                   "decisions (xsd/inspection/decision.xsd)"),
    "port": ("cargo notice, visit request, release notice (xsd/port/messages.xsd)",
             "acknowledgements, visit ids, decisions (xsd/port/replies.xsd)"),
    "maritime": ("Trafic2000 5.2 NCA_FAL1, NCA_FAL7MD, NCA_Suppr_Not (xsd/maritime/)",
                 "NCA_Receipt, NCA_Form_Res (xsd/maritime/replies.xsd)"),
    "border": ("Trafic2000 5.2 NCA_FAL5, NCA_FAL6, NCA_Suppr_Not (xsd/border/)",
               "NCA_Receipt, NCA_Form_Res (xsd/border/replies.xsd)"),
}
NOTICES = ("the hub's recognition notices (mutual recognition) and alert notices (enforcement assistance) "
           "(xsd/notices/notices.xsd)")
AGENCY_ALERT = ("a risk alert the agency raises on a declaration routed to it, as an alert notice with function "
                "code 9 (xsd/notices/notices.xsd)")
SPS_CERTIFICATE = ("a sanitary, phytosanitary or veterinary certificate the inspection agency issues, as UN/CEFACT "
                   "SPSCertificate XML (namespace urn:un:unece:uncefact:data:standard:SPSCertificate:17, the ePhyto "
                   "shape; xsd/sps/certificate.xsd), signed like its answers; it becomes a licence, once per "
                   "certificate number. From any other agency it is refused (dead letter not-issuer)")
# What an agency may send beside its answers and alerts.
ISSUED = {"inspection": SPS_CERTIFICATE}
HUB_HEADERS = ("Nats-Msg-Id (the deterministic message id), Tradehub-Declaration-Id, Tradehub-Version, "
               "Tradehub-Message, Tradehub-Function-Code")
DEAD_HEADERS = ("Tradehub-Dead-Code (a stable reason code), Tradehub-Dead-Reason, Tradehub-Agency, "
                "Tradehub-Stream-Sequence, Tradehub-Deliveries")
MAX_DELIVER = 5  # a message failing for reasons not its own is tried this often, then dead-lettered as poison
BATCH = 64  # answers fetched, and applied, together
ACK_WAIT = 10.0  # seconds: a consumer killed mid-message has it redelivered after this long


def durable_name(agency: str) -> str:
    return f"tradehub-in-{agency}"


def inbound_consumer(agency: str) -> PullConsumer:
    """The hub's durable consumer of an agency's answers, acknowledged by hand after the effect."""
    return PullConsumer(INBOUND_STREAM, inbound_subject(agency), durable_name(agency),
                        ConsumerConfig(max_deliver=MAX_DELIVER, ack_wait=ACK_WAIT))


def _describe_inbound(broker: NatsBroker, agency: str) -> None:
    consumer = inbound_consumer(agency)

    async def nothing(message: bytes) -> None: ...

    broker.subscriber(
        consumer.subject, stream=JStream(consumer.stream, declare=False), durable=consumer.durable,
        pull_sub=PullSub(batch_size=BATCH, batch=True), config=consumer.config, ack_policy=AckPolicy.MANUAL,
        title=f"{agency} answers",
        description=f"{FORMATS[agency][1]}, or {AGENCY_ALERT}"
                    + (f", or {ISSUED[agency]}" if agency in ISSUED else "")
                    + f". Applied once per reply id, then acknowledged; a refused message goes to {dead_subject(agency)}.",
    )(nothing)


def document(version: str) -> dict[str, Any]:
    """The hub's AsyncAPI document."""
    broker = NatsBroker("nats://127.0.0.1:4222")
    for agency in AGENCIES:
        broker.publisher(outbound_subject(agency), stream=JStream(OUTBOUND_STREAM, declare=False),
                         title=f"{agency} messages",
                         description=f"{FORMATS[agency][0]}, and {NOTICES}, one XML document per message, "
                                     f"validated before it leaves. Headers: {HUB_HEADERS}.")
        broker.publisher(dead_subject(agency), stream=JStream(DEAD_STREAM, declare=False),
                         title=f"{agency} dead letters",
                         description=f"Answers from {agency} the hub refused, as received. Headers: {DEAD_HEADERS}.")
        _describe_inbound(broker, agency)
    spec = AsyncAPI(broker, title="Trade hub broker contract", version=version,
                    description="NATS JetStream subjects of the Trade hub, one per agency and direction, "
                                "plus dead letters. Bodies are XML (application/xml).")
    return json.loads(spec.to_specification().to_json())


def document_text(version: str) -> str:
    return json.dumps(document(version), indent=2, sort_keys=True) + "\n"
