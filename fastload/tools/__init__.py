"""The commands over the library (``fastload bench``, ``convert``, ``verify``, ``sample``, ...):
they use only what the layers below offer."""
