"""Workflow files: the format's rules (hyperbatch.core.workflows), the picture (core.workflow_svg), the CLI's
reading of a file with each field's line (cli/workflow_file.py), and the shipped JSON schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hyperbatch.cli.errors import UsageError
from hyperbatch.cli.workflow_file import load, plan
from hyperbatch.core import workflow_svg, workflows
from hyperbatch.core.errors import SpecError

REPO = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def test_depends_on_is_a_list_meaning_afterok_or_a_map_naming_the_kind():
    assert workflows.parents(["a", "b"]) == {"a": "afterok", "b": "afterok"}
    assert workflows.parents({"a": "afterany", "b": "afternotok"}) == {"a": "afterany", "b": "afternotok"}
    assert workflows.parents(None) == {} == workflows.parents([])
    with pytest.raises(SpecError, match="give a list of steps"):
        workflows.parents("a")


def test_order_puts_parents_first_and_keeps_the_file_order_otherwise():
    jobs = {"report": {"depends_on": {"square": "afterok"}}, "prepare": {}, "square": {"depends_on": ["prepare"]},
            "alone": {}}
    assert workflows.order(jobs) == ["prepare", "square", "report", "alone"]


@pytest.mark.parametrize("jobs, message", [
    ({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["c"]}, "c": {"depends_on": ["a"]}},
     "jobs.a.depends_on: a cycle: a -> b -> c -> a (each waits for the next)"),
    ({"a": {"depends_on": ["a"]}}, "jobs.a.depends_on.a: a step cannot depend on itself"),
    ({"a": {}, "b": {"depends_on": ["c"]}}, "jobs.b.depends_on.c: no step named 'c' (steps: a, b)"),
    ({"a": {}, "b": {"depends_on": {"a": "after"}}}, "jobs.b.depends_on.a: 'after' is not a dependency kind"),
    ({"a": {"depends_on": 3}}, "jobs.a.depends_on: give a list of steps"),
])
def test_order_refuses_cycles_unknown_steps_and_bad_kinds_naming_the_field(jobs, message):
    with pytest.raises(SpecError) as caught:
        workflows.order(jobs)
    assert str(caught.value).startswith(message)


def test_substitution_replaces_known_variables_and_refuses_unknown_ones():
    assert workflows.substitute("1-${N}%${LIMIT}", {"N": "100", "LIMIT": "10"}) == "1-100%10"
    assert workflows.substitute("echo $HOME $${PBS_ARRAY_INDEX} $$x", {}) == "echo $HOME ${PBS_ARRAY_INDEX} $$x"
    with pytest.raises(SpecError, match=r"unknown variable \$\{M\}: give it with -v M=VALUE \(given: N\)"):
        workflows.substitute("${M}", {"N": "1"})
    with pytest.raises(SpecError, match="is not a variable"):
        workflows.substitute("${1x}", {})
    assert workflows.parse_variables(["N=5", "CSV=a,b=c", "N=6"]) == {"N": "6", "CSV": "a,b=c"}
    with pytest.raises(SpecError, match="-v oops: give KEY=VALUE"):
        workflows.parse_variables(["oops"])


def _boxes(svg: str) -> dict[str, tuple[str, str, str]]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return {g.get("data-step"): (g.get("data-state"), g.find(f"{SVG}rect").get("fill"),
                                 "".join(t.text or "" for t in g.iter(f"{SVG}text")))
            for g in root.iter(f"{SVG}g") if g.get("class") == "step"}


def test_the_picture_has_one_box_per_step_coloured_by_state_edges_labelled_and_names_escaped():
    steps = ["a<b>&c", "square", "report"]
    edges = [("a<b>&c", "square", "afterok"), ("square", "report", "afterany")]
    svg = workflow_svg.draw(steps, edges, states={"a<b>&c": "SUCCEEDED", "square": "FAILED"},
                            labels={"a<b>&c": "1.host"}, title="t&t")
    boxes = _boxes(svg)
    assert {s: b[:2] for s, b in boxes.items()} == {
        "a<b>&c": ("SUCCEEDED", "#9be59b"), "square": ("FAILED", "#ff8a8a"), "report": ("UNKNOWN", "#ffffff")}
    assert boxes["a<b>&c"][2] == "a<b>&c1.host succeeded"
    root = ET.fromstring(svg)
    labels = [(g.get("data-from"), g.get("data-to"), g.find(f"{SVG}text").text)
              for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert labels == [("a<b>&c", "square", "afterok"), ("square", "report", "afterany")]
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == ["succeeded", "failed", "unknown"]
    assert "&lt;b&gt;" in svg and "<b>" not in svg


def test_layers_put_every_child_below_all_its_parents():
    rows = workflow_svg.layers(["a", "b", "c", "d"], [("a", "b", "afterok"), ("b", "d", "afterok"),
                                                      ("a", "d", "afterok"), ("c", "d", "afterany")])
    assert rows == [["a", "c"], ["b"], ["d"]]
    plan_boxes = _boxes(workflow_svg.draw(["a"], []))
    assert plan_boxes == {"a": ("PLANNED", "#e0e0e0", "a")}


def _file(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FLOW = """\
name: sweep
defaults: {queue: batch}
jobs:
  prepare: {command: [sh, -c, "seq 1 ${N} > numbers"]}
  square:
    script: steps/square.sh
    array: "1-${N}"
    depends_on: [prepare]
  report: {command: ["true"], depends_on: {square: afterany}}
"""


def test_a_file_is_read_with_variables_substituted_scripts_inlined_and_each_field_s_line(tmp_path):
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "square.sh").write_text("#!/bin/sh\necho $PBS_ARRAY_INDEX\n")
    found = load(_file(tmp_path, FLOW), {"N": "7"})
    jobs = found.request["jobs"]
    assert jobs["prepare"]["command"] == ["sh", "-c", "seq 1 7 > numbers"]
    assert jobs["square"] == {"script": "#!/bin/sh\necho $PBS_ARRAY_INDEX\n", "script_name": "square.sh",
                              "array": "1-7", "depends_on": ["prepare"]}
    assert found.lines["jobs.square.array"] == 7 and found.lines["jobs.prepare.command.2"] == 4
    assert found.locate("jobs.square.array: bad") == f"{tmp_path / 'flow.yaml'}:7: jobs.square.array: bad"
    assert found.line_of("jobs.square: unknown queue") == 5
    assert found.line_of("jobs.report.depends_on: square: 'x' is not a kind") == 9  # the key after the path
    assert found.line_of("something else entirely") == 1
    assert plan(found) == (["prepare", "square", "report"],
                           [("prepare", "square", "afterok"), ("square", "report", "afterany")])


@pytest.mark.parametrize("text, variables, message", [
    (FLOW, {}, ":4: jobs.prepare.command.2: unknown variable ${N}"),
    ("name: x\njobs:\n  a: {command: [true]\n  b: 1\n", {}, ":4: not valid YAML:"),
    ("- a\n- b\n", {}, ":1: a workflow is a mapping of name, defaults and jobs"),
    ("name: x\njobs:\n  a: {script: nowhere.sh}\n", {}, ":3: jobs.a.script: script "),
    ("name: x\njobs:\n  a: {command: [x]}\n  b: {script: /dev/zero}\n", {},  # read whole, it never ended
     ":4: jobs.b.script: script /dev/zero is a device, not a file"),
    ("name: x\njobs:\n  a: {command: [x]}\n  b: {command: [x], depends_on: [c]}\n", {},
     ":4: jobs.b.depends_on.c: no step named 'c'"),
    # What YAML allows but a workflow cannot mean: PyYAML alone keeps the last of two keys silently, and
    # loops forever or runs out of stack or memory on the next three.
    ("name: x\njobs:\n  a: {command: [one]}\n  a: {command: [two]}\n", {},
     ":4: jobs.a: given twice in one mapping (first on line 3)"),
    ("name: x\njobs:\n  a: {command: [x], env: {A: '1', A: '2'}}\n", {}, ":3: jobs.a.env.A: given twice"),
    ("name: x\njobs: &j\n  a: {command: [x], env: *j}\n", {}, ":2: jobs.a.env: an alias of a value that contains it"),
    ("name: x\njobs:\n  a: {command: [x],\n      env: {A: !!binary aGk=}}\n", {},  # was: TypeError, not JSON serializable
     ":4: jobs.a.env.A: give text, a number, true or false, a list or a mapping (YAML's bytes has no JSON form)"),
    ("name: x\njobs:\n  a: {command: [x], env: {A: !!set {b}}}\n", {}, ":3: jobs.a.env.A: give text, a number"),
    ("name: x\ndefaults: {env: {A: " + "[" * 40 + "]" * 40 + "}}\njobs: {a: {command: [x]}}\n", {},
     ":2: defaults.env.A.0." ),
    ("name: x\ndefaults: {env: {A: " + "[" * 2000 + "]" * 2000 + "}}\n", {}, ": lists and mappings nest more than 32 deep"),
])
def test_a_bad_file_is_one_line_naming_its_line_and_field(tmp_path, text, variables, message):
    path = _file(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load(path, variables)
    assert str(caught.value).startswith(f"{path}{message}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_script_that_is_a_fifo_is_refused_rather_than_waited_for(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.sh")
    path = _file(tmp_path, "name: x\njobs:\n  a: {script: pipe.sh}\n")
    with pytest.raises(UsageError) as caught:
        load(path, {})
    assert str(caught.value) == f"{path}:3: jobs.a.script: script {tmp_path / 'pipe.sh'} is a FIFO, not a file"


def test_aliases_that_expand_past_a_million_values_are_refused_at_once(tmp_path):
    text = ("name: x\ndefaults:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"  # 10^9 values in 11 lines
            + "".join(f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 9))
            + "jobs: {a: {command: *a8}}\n")
    path = _file(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load(path, {})
    assert str(caught.value).startswith(f"{path}:")
    assert str(caught.value).endswith(": the file's aliases expand to more than 1,000,000 values")


def test_a_date_is_the_text_it_is_written_as_since_json_has_no_dates(tmp_path):
    text = "name: x\njobs:\n  a: {command: [echo, 2024-01-31], env: {DAY: 2024-01-31, AT: 2001-12-14t21:59:43.10-05:00}}\n"
    request = load(_file(tmp_path, text), {}).request
    assert request["jobs"]["a"] == {"command": ["echo", "2024-01-31"],
                                    "env": {"DAY": "2024-01-31", "AT": "2001-12-14t21:59:43.10-05:00"}}
    json.dumps(request)  # what the CLI sends: it raised TypeError on a date


def test_anchors_and_merge_keys_still_share_values_and_a_step_s_own_key_wins_over_a_merged_one(tmp_path):
    text = ("name: x\ndefaults: &d {queue: batch, walltime: '00:01:00'}\n"
            "jobs:\n  a: {<<: *d, queue: west, command: &c [echo, hi]}\n  b: {command: *c}\n")
    jobs = load(_file(tmp_path, text), {}).request["jobs"]
    assert jobs["a"] == {"queue": "west", "walltime": "00:01:00", "command": ["echo", "hi"]}
    assert jobs["b"] == {"command": ["echo", "hi"]}


def test_the_shipped_json_schema_is_the_one_the_api_validates_with():
    from hyperbatch.api import WorkflowRequest

    shipped = json.loads((REPO / "docs" / "workflow.schema.json").read_text())
    assert shipped == WorkflowRequest.model_json_schema(), (
        "regenerate it: .venv/bin/python -c 'import json; from hyperbatch.api import WorkflowRequest; "
        "print(json.dumps(WorkflowRequest.model_json_schema(), indent=2))' > docs/workflow.schema.json")


@pytest.mark.parametrize("name", ["sweep", "a.b-c_1", "9" * 64])
def test_a_workflow_name_as_the_pattern_allows_it(name):
    assert workflows.check_name(name) == name


@pytest.mark.parametrize("name, shown", [("", ""), ("../x", "../x"), ("-x", "-x"), ("a/b", "a/b"), ("x\n", "x\\n"),
                                         ("a\x00b", "a\\x00b"), ("x" * 500, "x" * 64 + "..."), (7, "7")])
def test_a_name_that_cannot_be_a_workflow_s_is_refused_saying_what_to_give(name, shown):
    with pytest.raises(SpecError) as caught:
        workflows.check_name(name)
    assert str(caught.value) == (f"workflow name '{shown}': use letters, digits, _, . and - (at most 64), "
                                 "not starting with . or -")


def test_the_shipped_json_schema_takes_the_example_and_refuses_what_the_api_refuses():
    """What an editor or a linter checks a file with: a step name the API refuses was unconstrained
    (patternProperties alone lets any other key through, with any value)."""
    import jsonschema
    import yaml

    schema = json.loads((REPO / "docs" / "workflow.schema.json").read_text())
    check = jsonschema.Draft202012Validator(schema)
    assert not list(check.iter_errors(yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())))
    for bad in ({"name": "x", "jobs": {"a b": 42}}, {"name": "../x", "jobs": {"a": {"command": ["x"]}}},
                {"name": "x", "jobs": {"a": {"command": ["x"], "depends_on": {"b": "afterbad"}}}},
                {"name": "x", "jobs": {"a": {"command": ["x"], "color": "red"}}}):
        assert list(check.iter_errors(bad)), bad
