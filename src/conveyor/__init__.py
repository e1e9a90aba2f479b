"""conveyor: consume and produce messages on durable streams, on any broker.

```python
import conveyor

async with conveyor.connect("memory://") as backend:
    await backend.publish("orders", {"type": "order.paid", "order_id": 7})
    processor = conveyor.StreamProcessor(backend, "orders", "billing", "worker-1")
    processor.set_callback(handle)
    async with processor:
        ...
```
"""

from conveyor.app import App
from conveyor.discovery import StreamInfo
from conveyor.dlq import DeadLetters
from conveyor.errors import ConveyorError
from conveyor.message import Message
from conveyor.middleware import Middleware
from conveyor.processor import ProcessorOptions, StreamProcessor
from conveyor.producer import Producer
from conveyor.protocol import (
    Capabilities,
    ConsumerInfo,
    ConsumerSession,
    GroupInfo,
    StreamBackend,
    StreamStorageProtocol,
)
from conveyor.registry import available_backends, connect
from conveyor.router import Router
from conveyor.stats import ProcessorStats

__version__ = "0.1.0"

__all__ = [
    "App",
    "Capabilities",
    "ConsumerInfo",
    "ConsumerSession",
    "ConveyorError",
    "DeadLetters",
    "GroupInfo",
    "Message",
    "Middleware",
    "ProcessorOptions",
    "ProcessorStats",
    "Producer",
    "Router",
    "StreamBackend",
    "StreamInfo",
    "StreamProcessor",
    "StreamStorageProtocol",
    "available_backends",
    "connect",
]
