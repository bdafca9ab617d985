"""The ``twistd bridge`` plugin: all logic lives in L{twistbridge.tap}."""

from twisted.application.service import ServiceMaker

TwistBridge = ServiceMaker(
    "twistbridge",
    "twistbridge.tap",
    "izzati uploads, Igor WebSocket streams, JSON-RPC 2.0 and bgpy tasks",
    "bridge",
)
