"""The application's contracts, shared by the gateway and the plugins: the messages on the bus
(`messages`, `gpu`), their bounds (`bounds`), the subjects they travel on (`subjects`), the
facts model actors report (`models`), the feedback plugin's table names (`tables`) and paging
through `osiris.store.query` (`store`).

It builds on `osiris_core` (the `Subject` and `Contract` types); the core imports nothing
from here. A plugin's own messages stay in that plugin's `contracts` module."""
