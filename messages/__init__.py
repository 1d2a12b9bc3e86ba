from messages.render import configure, render

__all__ = ["configure", "render"]
