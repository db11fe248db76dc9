"""User-facing errors.

Every error a user can cause (a bad config key, a missing file, a malformed row, an expert whose
weights cannot be found) is raised as a ``SkillMoEError`` subclass with a message that names the bad
input. The entry point prints these as one line, without a traceback.
"""


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
