"""The one error type users see: one line naming file, object and field."""

from __future__ import annotations


class PodnetError(Exception):
    """A failure with a one-line, user-facing reason.

    ``where`` is ``file:line`` when known, ``obj`` is ``Kind ns/name``, ``field`` a dotted path.
    """

    def __init__(self, msg: str, *, where: str | None = None, obj: str | None = None,
                 field: str | None = None) -> None:
        self.msg = msg
        self.where = where
        self.obj = obj
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.where, self.obj, self.field) if p]
        return ": ".join([*parts, self.msg])


class NotRootError(PodnetError):
    pass


class MissingFeatureError(PodnetError):
    pass
