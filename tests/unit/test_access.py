"""Who is an admin: IAM users exactly, and a role's every session (hyperbatch.core.access)."""

import pytest

from hyperbatch import config
from hyperbatch.core.access import Admins

ADMINS = Admins.of([
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:iam::111122223333:role/Ops",
    "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123abcd",
    "arn:aws:sts::111122223333:assumed-role/Other/one-session",
])


@pytest.mark.parametrize("caller", [
    "arn:aws:iam::111122223333:user/alice",
    "arn:aws:sts::111122223333:assumed-role/Ops/alice",  # any session of the role
    "arn:aws:sts::111122223333:assumed-role/Ops/1700000000000000000",
    "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123abcd/bob@example.com",  # path left out
    "arn:aws:sts::111122223333:assumed-role/Other/one-session",  # a session named exactly
])
def test_admins(caller):
    assert caller in ADMINS


@pytest.mark.parametrize("caller", [
    "arn:aws:iam::111122223333:user/bob",
    "arn:aws:sts::444455556666:assumed-role/Ops/alice",  # another account's role of the same name
    "arn:aws-cn:sts::111122223333:assumed-role/Ops/alice",  # another partition
    "arn:aws:sts::111122223333:assumed-role/OpsTeam/alice",  # a name that only starts alike
    "arn:aws:sts::111122223333:assumed-role/Other/another-session",
    "arn:aws:sts::111122223333:federated-user/Ops",
])
def test_not_admins(caller):
    assert caller not in ADMINS


def test_an_entry_that_is_no_principal_arn_is_refused_with_the_forms_it_may_take(tmp_path):
    import json
    import shutil
    from pathlib import Path

    root = tmp_path / "c"
    shutil.copytree(Path(__file__).resolve().parents[2] / "configurations", root)
    settings = json.loads((root / "settings.json").read_text())
    (root / "settings.json").write_text(json.dumps({**settings, "admins": ["Ops"]}))
    with pytest.raises(config.ConfigError) as err:
        config.load(root)
    assert "settings.json: field 'admins': 'Ops' is not an IAM principal ARN" in str(err.value)
    assert "arn:aws:iam::ACCOUNT:role/NAME" in str(err.value)
