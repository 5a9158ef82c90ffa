"""`hyper top` against an AWS host (the box's API over HTTP, signed as a user): the same view as in
local mode, from the same API, with what IAM allows each caller to see."""

from __future__ import annotations

import json

from hyperbatch.cli.runner import run as run_click
from hyperbatch.core.errors import PBSE_PERM
from tests.aws_box.harness import ALICE, BOB, http_api

KEYS = {"AKIAALICE": ALICE, "AKIABOB": BOB}


def test_hyper_top_snapshot_of_an_aws_host(box, tmp_path, monkeypatch, capsys):
    from hyperbatch.cli.top import top as hyper_top

    array = box.submit(command=["sh", "-c", 'test "$HYPER_ARRAY_INDEX" != 3'], array="1-6", name="sweep")
    box.start_worker()
    box.wait_state(array["id"], "FAILED", timeout=60)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HYPERBATCH_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "160")
    with http_api(box, KEYS) as url:
        (home / "hosts.json").write_text(json.dumps(
            {"selected": "box", "hosts": {"box": {"kind": "aws", "url": url, "region": box.region}}}))

        def top(user: str, *args: str) -> tuple[int, str, str]:
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"AKIA{user.upper()}")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
            capsys.readouterr()
            code = run_click(hyper_top, "hyper", list(args))
            out, err = capsys.readouterr()
            return code, out, err

        code, out, err = top("alice")
        assert (code, err) == (0, "")
        row = next(line.split() for line in out.splitlines() if line.startswith(array["id"]))
        assert row[1:3] == ["sweep", "alice"] and row[4:6] == ["6/6", "1"], out
        task = array["id"].replace("[]", "[3]")
        assert any(line.split()[:2] == [task, "alice"] and line.endswith("exit status 1") for line in
                   (line.rstrip() for line in out.splitlines())), out

        code, out, err = top("bob")  # Bob sees his own jobs only: none
        assert (code, err) == (0, "") and "Arrays: none" in out and array["id"] not in out
        code, out, err = top("bob", "--user", "alice")
        assert (code, out) == (PBSE_PERM & 0xFF, "") and err == "hyper: only admins may list other users' jobs\n"
