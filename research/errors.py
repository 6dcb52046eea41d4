"""The errors a user fixes by changing the command, and the walk along an
exception's causes.

Every error whose message is one paragraph saying what to change derives from
`UserError`; the commands (research.main, research.visualize, the launchers)
print that paragraph and exit 1, and leave tracebacks to bugs of ours.
"""
from typing import Iterator


class UserError(Exception):
  """A mistake in the command, the config or the files given; the message
  says what to change."""


def causes(error: BaseException | None) -> Iterator[BaseException]:
  """`error`, then what it wraps (`__cause__`, else `__context__`), outermost
  first: libraries (ml_collections, Orbax, TensorStore) wrap the error that
  says what went wrong in their own."""
  while error is not None:
    yield error
    error = error.__cause__ or error.__context__
