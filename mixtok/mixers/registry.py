"""The registry of token mixers by name, so configs can say `token_mixers=("pooling", ...)`."""

from mixtok.registry import Registry

MIXERS = Registry("token mixer")
register = MIXERS.register


def get(name: str):
    """The mixer class registered under `name`; an unknown name lists the close matches."""
    return MIXERS.get(name)


def list_mixers():
    return MIXERS.names()
