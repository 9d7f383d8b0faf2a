"""A plugin whose import fails: the runtime must report it by name and go on."""

raise ImportError("broken_import plugin: this module fails to import on purpose")
