"""The engine: `StreamProcessor` and the small parts it is made of.

One message's path, top to bottom:

* `reader.Reader` keeps one read in flight on the consumer session, into the bounded inbox
  of `ledger.Ledger` (which also tracks every message the processor holds);
* `worker.Worker` runs the handler (``concurrency`` tasks share it), wrapped once per
  start in the middleware chain when there is one (`parts.Parts.worker`,
  `conveyor.middleware`); a finished message goes to `acker.Acker`, which acknowledges
  in batches;
* a failed one goes to the `retries` strategy chosen from the backend's capabilities
  (the engine's timer and ``redeliver``, or the broker's ``nack``), or at
  ``max_deliveries`` to `deadletters.DeadLetters`;
* `keeper.Keeper` heartbeats what is held and claims what stopped consumers left;
* `calls.BrokerCalls` owns the session and the one policy for failed broker calls
  (recreate a vanished group, else back off on the injected clock);
* `options.ProcessorOptions` validates every knob once, for `StreamProcessor` and `App`.
"""

from conveyor.processor.options import ErrorHook, ProcessorOptions, dead_letter_stream_for
from conveyor.processor.stream_processor import StreamProcessor

__all__ = ["ErrorHook", "ProcessorOptions", "StreamProcessor", "dead_letter_stream_for"]
