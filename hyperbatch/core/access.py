"""Who is an admin: the callers that `settings.admins` names.

API Gateway hands the function the caller's ARN as IAM verified it. People
seldom call as an IAM user: they sign in through a role (IAM Identity Center,
federation, `aws sts assume-role`), and then they call as a session of it,

    arn:aws:sts::111122223333:assumed-role/NAME/SESSION

where SESSION changes with every sign-in (often the person's e-mail) and the
role's path is left out. An exact match of such ARNs would never hold for
long, so an entry naming a role,

    arn:aws:iam::111122223333:role/[PATH/]NAME

admits every session of it: same partition, same account, same role name.
Any other entry (an IAM user, or one session's ARN) must match exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

_ROLE = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):role/(?:[^:]*/)?(?P<name>[^/:]+)$")
_SESSION = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/:]+)/[^/]+$")
# What an entry may look like: an IAM user or role, or an STS session (for `settings.admins` validation).
PRINCIPAL = re.compile(r"^arn:[^:]+:(iam::\d{12}:(user|role)/\S+|sts::\d{12}:assumed-role/\S+)$")


@dataclass(frozen=True)
class Admins:
    exact: frozenset[str]
    roles: frozenset[tuple[str, str, str]]  # (partition, account, role name) of the role entries

    @classmethod
    def of(cls, entries: Iterable[str]) -> "Admins":
        entries = list(entries)
        roles = frozenset((m["partition"], m["account"], m["name"]) for e in entries if (m := _ROLE.match(e)))
        return cls(frozenset(entries), roles)

    def __contains__(self, caller: str) -> bool:
        """Whether the caller with this ARN is an admin."""
        if caller in self.exact:
            return True
        session = _SESSION.match(caller)
        return session is not None and (session["partition"], session["account"], session["name"]) in self.roles
