"""The Textual cockpit (``segwatch run`` / ``attach`` / ``resume``). Never imports torch."""
