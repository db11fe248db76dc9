"""User-facing errors.

Every error a user can cause (a bad config key, a missing file, a malformed row, an expert whose
weights cannot be found) is raised as a ``SkillMoEError`` subclass with a message that names the bad
input. The entry point prints these as one line, without a traceback.
"""

import errno
import os
import shutil


class SkillMoEError(Exception):
    """Base class of errors caused by user input, printed without a traceback."""


class ConfigError(SkillMoEError):
    """A configuration value is missing, unknown or out of range."""


class DataError(SkillMoEError):
    """A data file is missing or one of its rows is malformed."""


class EngineError(SkillMoEError):
    """An engine could not be created, loaded or asked to generate."""


class ExpertFailed(SkillMoEError):
    """An expert kept failing (its actor died, its engine crashed) after ``scheduler.max_retries`` retries."""


class StorageError(SkillMoEError):
    """The cache or the run directory could not be written (a full disk, no permission, a symlink loop).

    Never an expert's failure: the expert is neither retried nor reloaded for it.
    """


class StoreFailed(Exception):
    """Storing a finished chunk failed (``on_done`` raised): the consumer's error, not the expert's.

    Kept apart from the expert's own errors so that it is never retried and never discards (reloads) the
    expert; ``error`` is what ``on_done`` raised.
    """

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class Interrupted(SkillMoEError):
    """Ctrl-C (SIGINT) stopped the run; what finished is kept."""


def root_cause(exc: BaseException) -> BaseException:
    """The error a chain of remote-task wrappers carries (Ray's ``RayTaskError`` keeps it in ``.cause``).

    Ray re-creates a remote error as a subclass of its cause's class whose text is the whole remote
    traceback; its ``.cause`` is the original error, whose text is the message the user should see.
    """
    seen = exc
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    return seen


def user_facing(exc: BaseException) -> SkillMoEError | None:
    """The user's own error (a :class:`SkillMoEError`) in ``exc``'s chain of causes and remote wrappers.

    A Ray wrapper of a remote ``SkillMoEError`` is itself an instance of it (a subclass Ray makes) whose text
    is the remote traceback, so the wrapper is looked through first (its ``.cause``).
    """
    seen: BaseException | None = exc
    while seen is not None:
        cause = getattr(seen, "cause", None)
        if isinstance(cause, BaseException) and cause is not seen:
            seen = cause
        elif isinstance(seen, SkillMoEError):
            return seen
        else:
            seen = seen.__cause__
    return None


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of ``exc``'s root cause."""
    cause = root_cause(exc)
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__


# Errors the same input raises again: retrying them on a fresh expert only costs a model load.
DETERMINISTIC = (SkillMoEError, ValueError, TypeError, LookupError, NotImplementedError, UnicodeError)


def is_deterministic(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error a Ray wrapper carries) is one a retry would meet again."""
    return isinstance(root_cause(exc), DETERMINISTIC)


class PastDeadline(TimeoutError):
    """A call that got no answer before its requests' deadline (online: ``serve.request_timeout_s``, when
    every client it would answer has had its 504): a retry would answer no one, and would wait as long
    again on a replica that is likely the same hung one."""


def is_past_deadline(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error a Ray wrapper carries) is a :class:`PastDeadline`."""
    return isinstance(root_cause(exc), PastDeadline)


def retry_helps(exc: BaseException) -> bool:
    """Whether running the failed work again on a fresh expert can help: not for an error the same input
    raises again (:func:`is_deterministic`), nor for a call past its requests' deadline
    (:func:`is_past_deadline`)."""
    return not (is_deterministic(exc) or is_past_deadline(exc))


def free_space(path: str) -> str:
    """Free bytes on the disk holding ``path`` (its nearest existing folder), in words."""

    folder = os.path.abspath(path)
    while folder != os.path.dirname(folder) and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return "free space unknown"


# What a write meets when the storage, not the data, is at fault.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP,
                            errno.ENOTDIR, errno.EEXIST, errno.EIO, errno.ENAMETOOLONG, errno.EISDIR})


def storage_error(exc: OSError, what: str, path: str) -> StorageError:
    """A :class:`StorageError` naming what could not be written, where, the errno in words and the
    free space."""
    name = errno.errorcode.get(exc.errno or 0, "")
    words = exc.strerror or str(exc)
    where = exc.filename or path
    return StorageError(
        f"cannot write {what} at {where}: {words}{f' ({name})' if name else ''}, "
        f"{free_space(str(where))} there; make room or choose another directory and rerun "
        f"(what was stored is kept and reused)"
    )
