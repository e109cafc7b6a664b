"""Precis's one error hierarchy.

Every failure Precis raises on purpose is a `PrecisError`; the command line prints it as one
line (`precis: error: ...`) and exits with the class's `exit_code`: 2 for usage and input errors
(the default), 1 for work that was tried and failed (a gate, a refused publish, a lake that cannot
be reached, writes that kept conflicting). The pipeline and the DAG decide what to do by the
class, never by the text of the message. This module imports nothing, so every layer (`ranker/`,
`generator/`, `training/`, `jobs/`, `dags/`) can raise from it without knowing of the others.

    PrecisError
    ├── ConfigError            a configuration file, key or override that cannot be used
    ├── MissingPrerequisite    something an earlier step or command makes is not there yet
    │   ├── ModelNotFound      a registry model not in the local cache
    │   └── NoRanker           no trained (or exported) ranker yet
    ├── IngestError            an input file that cannot be ingested at all (nothing committed)
    ├── Rejected               one record that fails parsing or validation (quarantined, not raised
    │                          to the user)
    ├── InvalidOutput          a model output that fails its task's rules (stored as a failure)
    ├── LakeError              a lake that cannot be used as configured
    │   ├── LakeUnreachable    the lake's store refused or could not be reached     (exit 1)
    │   └── LakeConflict       a write that kept losing to concurrent writers      (exit 1)
    ├── QualityGateFailed      a quality gate failed; the message lists the expectations (exit 1)
    ├── PublishRefused         publishing would serve data that did not pass its gate (exit 1)
    ├── QueryRefused           `precis sql` was asked to do something other than read
    ├── PackError              a GPU pack's parcel missing or damaged (re-send the parcel named)
    └── UsageError             command-line arguments that cannot go together

`MissingPrerequisite` is also a `FileNotFoundError`, `ConfigError`, `Rejected` and
`InvalidOutput` are also `ValueError`s, so code written against the builtin types keeps working.
"""

from __future__ import annotations


class PrecisError(Exception):
    """A failure the user can act on; the message says what to do."""

    exit_code: int = 2  # the command line's exit status: 2 usage or input, 1 failed work


class ConfigError(PrecisError, ValueError):
    """A configuration file or override that cannot be used; the message names the key and its source."""


class MissingPrerequisite(PrecisError, FileNotFoundError):
    """Something an earlier step or command produces is missing.

    `what` names the missing thing (for logs and for code that decides on it) and `how` the
    command that makes it; the message reads "<what>; <how>".
    """

    def __init__(self, what: str, how: str = ""):
        self.what = what
        self.how = how
        super().__init__(f"{what}; {how}" if how else what)

    def __reduce__(self):  # picklable across Spark workers and Airflow processes
        return (type(self), (self.what, self.how))


class ModelNotFound(MissingPrerequisite):
    """A registry model that is not in the cache; `how` says how to get it."""


class NoRanker(MissingPrerequisite):
    """A ranking step has no ranker to run; the daily DAG skips such a step instead of failing it."""


class IngestError(PrecisError):
    """An input that cannot be ingested at all (unreadable, unknown format); nothing is committed."""


class Rejected(PrecisError, ValueError):
    """A record that fails parsing or validation; the message is the quarantine reason."""


class InvalidOutput(PrecisError, ValueError):
    """A model's text that fails validation; the message is the failure reason."""


class LakeError(PrecisError):
    """A lake that cannot be used as configured; the message says what to change."""


class LakeUnreachable(LakeError):
    """The lake's store refused the request or could not be reached (credentials, network)."""

    exit_code = 1


class LakeConflict(LakeError):
    """A write that kept losing to concurrent writers for `lake.commit_attempts` attempts."""

    exit_code = 1


class QualityGateFailed(PrecisError):
    """A gate failed; the message lists the failed expectations."""

    exit_code = 1


class PublishRefused(PrecisError):
    """Publishing would serve data that did not pass its quality gate."""

    exit_code = 1


class QueryRefused(PrecisError):
    """`precis sql` is read-only; the message names the refused statement."""


class PackError(PrecisError):
    """A GPU pack's parcel is missing or a file does not match its sha256 (`training.gpu_pack`);
    the message names the parcel to carry again."""


class UsageError(PrecisError, ValueError):
    """Arguments that parse but cannot be run together (`train ranker --method sft`); the message
    says what to give instead."""
