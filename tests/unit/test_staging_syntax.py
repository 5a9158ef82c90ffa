"""Staging's syntax (core/staging.py): PBS's -W stagein/stageout and HyperBatch's --stage-in/--stage-out,
read by the option table the same on the command line, in a script and over the API."""

import pytest

from hyperbatch.core import options, staging
from hyperbatch.core.directives import parse_directives
from hyperbatch.core.errors import SpecError

CTX = options.Context(now=1775814994.0, environ={"HOME": "/home/alice"}, host="login1.example.org", cwd="/work")


def _submit(pairs, workdir="/work"):
    """What qsub sends: the occurrences parsed, then finished against the submit directory and host."""
    fields = options.parse_occurrences(pairs, CTX)
    fields["env"] = {"PBS_O_HOST": CTX.host}
    out = options.finish(fields, workdir=workdir)
    return {k: out[k] for k in ("stagein", "stageout") if k in out}


def test_pbs_pairs_keep_their_order_and_relative_remote_paths_are_the_submit_directorys():
    assert _submit([("-W", "stagein=in.txt@localhost:data/in.txt,ref@login1:/db/ref"),
                    ("-W", "stageout=out.txt@login1:results/out.txt,logs/@login1.example.org:/keep/")]) == {
        "stagein": ["in.txt@localhost:/work/data/in.txt", "ref@login1:/db/ref"],
        "stageout": ["out.txt@login1:/work/results/out.txt", "logs/@login1.example.org:/keep/"],
    }


def test_hyperbatch_forms_default_to_the_files_name_and_the_submit_directory():
    assert _submit([("--stage-in", "data/in.txt"), ("--stage-in", "data/ref.db:ref/db"),
                    ("--stage-in", "s3://bucket/k/a.csv"), ("--stage-out", "results/*.csv"),
                    ("--stage-out", "model.bin:s3://bucket/models/")]) == {
        "stagein": ["in.txt@login1.example.org:/work/data/in.txt", "ref/db@login1.example.org:/work/data/ref.db",
                    "a.csv@s3://bucket/k/a.csv"],
        "stageout": ["results/*.csv@login1.example.org:/work/", "model.bin@s3://bucket/models/"],
    }


def test_both_forms_add_up_and_the_command_line_replaces_a_scripts_pairs():
    script = "#!/bin/sh\n#PBS -W stagein=a@login1:/x/a\n#HYPER --stage-in /x/b\necho\n"
    header = parse_directives(script, ctx=CTX)
    assert header == {"stagein": ["a@login1:/x/a", "b@login1.example.org:/x/b"]}
    line = options.parse_occurrences([("--stage-in", "/y/c")], CTX)
    assert options.combine(header, line)["stagein"] == ["c@login1.example.org:/y/c"]


def test_a_comma_inside_a_name_is_escaped_as_pbs_does():
    [stage] = staging.stages({"stagein": _submit([("-W", r"stagein=a\,b@login1:/d/a\,b")])["stagein"]}, "stagein")
    assert (stage.local, stage.host, stage.path) == ("a,b", "login1", "/d/a,b")


def test_array_index_placeholder_becomes_the_tasks_index():
    job = {"stageout": ["out.^array_index^@login1:/r/out.^array_index^"]}
    [stage] = staging.stages(job, "stageout", 7)
    assert stage.text() == "out.7@login1:/r/out.7"


def test_s3_pairs_name_their_bucket_and_key():
    [stage] = staging.stages({"stagein": ["in/a.csv@s3://my-bucket/k/a.csv"]}, "stagein")
    assert (stage.is_s3, stage.bucket, stage.path, stage.host) == (True, "my-bucket", "k/a.csv", None)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("-W", "stagein=in.txt", "illegal -W value: stagein 'in.txt': give LOCAL@HOST:REMOTE"),
        ("-W", "stagein=@login1:/x", "illegal -W value: stagein '@login1:/x': give LOCAL@HOST:REMOTE"),
        ("-W", "stagein=a@login1:", "illegal -W value: stagein 'a@login1:': give LOCAL@HOST:REMOTE"),
        ("-W", "stagein=a@:/x", "illegal -W value: stagein 'a@:/x': give LOCAL@HOST:REMOTE"),
        ("-W", "stageout=a@login1:/x,,b@login1:/y", "illegal -W value 'a@login1:/x,,b@login1:/y': an empty item"),
        ("-W", "stagein=a@elsewhere:/x", "illegal -W value: stagein host 'elsewhere': files are staged from and to "
                                         "the submit host (login1.example.org) or s3://bucket/key; "
                                         "give a@login1.example.org:/x"),
        ("-W", "stagein=../a@login1:/x", "illegal -W value: stagein '../a': the name in the job's directory must "
                                         "stay inside it"),
        ("-W", "stagein=/etc/a@login1:/x", "illegal -W value: stagein '/etc/a': the name in the job's directory "
                                           "must be relative"),
        ("-W", "stagein=a@s3://:/x", "illegal -W value: stagein 's3://:/x': give s3://bucket/key"),
        ("--stage-in", "s3://bucket", "--stage-in 's3://bucket': name an object"),
        ("--stage-in", "in.txt:", "--stage-in 'in.txt:': give SRC[:DEST]"),
        ("--stage-in", "/data/x:/abs", "--stage-in '/abs': the name in the job's directory must be relative"),
        ("--stage-in", "~/in.txt", "--stage-in '~/in.txt': give the path without '~'"),
        ("--stage-out", ":s3://b/k", "--stage-out ':s3://b/k': give PATTERN[:DEST]"),
    ],
)
def test_bad_values_are_refused_with_one_line_saying_what_to_fix(flag, value, message):
    with pytest.raises(SpecError) as error:
        _submit([(flag, value)])
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)


def test_the_api_takes_text_or_a_list_and_needs_absolute_paths_without_a_submit_directory():
    assert options.check_field("stagein", "a@h:/x/a,b@h:/x/b") == ["a@h:/x/a", "b@h:/x/b"]
    assert options.check_field("stageout", ["*.csv@h:/r/"]) == ["*.csv@h:/r/"]
    with pytest.raises(SpecError, match="give LOCAL@HOST:REMOTE text, or a list of them"):
        options.check_field("stagein", {"a": "b"})
    with pytest.raises(SpecError, match=r"stagein 'a@h:x/a': give an absolute path \(no submit directory"):
        options.finish({"stagein": ["a@h:x/a"]}, workdir=None)


def test_qstat_shows_pbs_text_and_the_files_staged_out_with_their_sizes():
    assert staging.pbs_text(["a@h:/x/a", "b\\,c@h:/x/b"]) == "a@h:/x/a,b\\,c@h:/x/b"
    assert staging.files_text([{"path": "out.txt", "dest": "/r/out.txt", "size": 12},
                               {"path": "b.csv", "dest": "/r/b.csv", "size": 0}]) == "/r/out.txt (12 bytes),/r/b.csv (0 bytes)"
    assert staging.pbs_text([]) is None and staging.files_text([]) is None
