"""The bodies the API answers with, as pydantic models: what its OpenAPI document says each route returns.

They describe what hyperbatch.core.views (a job), hyperbatch.core.tasks (an array's tasks),
hyperbatch.core.nodes and the scheduler produce; the API does not pass its answers through them
(a job's view is built as a dict, once, for every reader), so tests hold the two together: the
schemathesis suite checks every answer it gets against these schemas. They allow fields they do
not name, so that a field added to a view is not a broken answer before it is documented here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperbatch.core.states import JobState



def _example(**example: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class ErrorBody(BaseModel):
    """Every 4xx and 5xx: a code, one line that says what to fix, and PBS's error number where PBS has one."""

    model_config = _example(error="NotFound", message="Unknown Job Id 1234.myhost", pbs_errno=15001,
                            job_id="1234.myhost")
    error: str = Field(description="the kind of error: ValidationError, NotFound, Conflict, Unauthorized, ...")
    message: str = Field(description="what is wrong, in one line (PBS's wording where PBS has one)")
    pbs_errno: int | None = Field(None, description="PBS's error number: the commands print PBS's text for it")
    job_id: str | None = Field(None, description="the job the request named, with .SERVER appended as PBS echoes it")


class ArrayView(BaseModel):
    """An array job's counters and its failed (index: exit status) and cancelled tasks."""

    model_config = _example(spec="1-100", total=100, pending=60, running=10, succeeded=27, failed=2, cancelled=1,
                            failed_tasks={"7": 3, "9": 1}, cancelled_tasks=[12])

    spec: str = Field(examples=["1-100"])
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    failed_tasks: dict[str, int] = Field(description="exit status by task index (the index as text)")
    cancelled_tasks: list[int]


class StagedFile(BaseModel):
    model_config = _example(path="out.txt", dest="myhost:/data/results/out.txt", size=1024)
    path: str
    dest: str
    size: int


_JOB_EXAMPLE: dict[str, Any] = {
    "id": "1234.myhost", "seq": "1234", "server": "myhost", "name": "sweep", "owner": "alice", "queue": "batch",
    "definition": "standard", "state": "RUNNING", "job_state": "R", "substate": 42, "attempt": 1, "run_count": 1,
    "max_attempts": 1, "priority": 0, "exit_status": None, "reason": "", "submitted_at": 1796687640.3,
    "started_at": 1796687641.1, "finished_at": None, "exec_host": "us-east-1/w-1a2b", "walltime": 3600,
    "env": {"PBS_O_QUEUE": "batch"}, "resources": {"ncpus": 1, "mem": "1gb"}, "command": None,
    "script_name": "run.sh", "cpu_seconds": None, "workdir": "/home/alice", "depend": "", "history": [
        [1796687640.3, "S", "Job Queued at request of alice, owner = alice, job name = sweep, queue = batch"]],
    "array": None,
}


class JobView(BaseModel):
    """A job as the API shows it (hyperbatch.core.views.view): PBS ids, no script body."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})
    id: str = Field(description="the PBS id: 1234.server, 1234[].server for an array (what qsub prints)")
    seq: str = Field(description="the sequence number alone")
    server: str
    name: str
    owner: str
    queue: str
    definition: str
    state: JobState
    job_state: str = Field(description="PBS's state letter (Q, H, W, R, B, F, ...)")
    substate: int
    attempt: int
    run_count: int
    max_attempts: int
    priority: int
    exit_status: int | None
    reason: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    exec_host: str | None
    walltime: int | None = Field(description="seconds")
    env: dict[str, str]
    resources: dict[str, Any]
    command: list[str] | None
    script_name: str | None
    cpu_seconds: float | None
    workdir: str | None
    account: str | None = None
    project: str | None = None
    checkpoint: str | None = None
    output_path: str | None = None
    error_path: str | None = None
    join: str | None = None
    keep: str | None = None
    remove_files: str | None = None
    shell: str | None = None
    rerunnable: bool | None = None
    execution_time: float | None = None
    mail_points: str | None = None
    mail_users: str | None = None
    umask: str | None = None
    sandbox: str | None = None
    stagein: list[str] = []
    stageout: list[str] = []
    stageout_files: list[StagedFile] = Field([], description="what the last run staged out")
    depend: str = Field(description="dependencies, naming PBS ids: afterok:12.server:13.server")
    history: list[list[Any]] = Field(description="[[time, 'S' | 'M', text], ...] as tracejob prints it")
    array: ArrayView | None


class JobBatch(BaseModel):
    """The jobs of a batch submit, in the order they were given."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"jobs": [_JOB_EXAMPLE]}]})
    jobs: list[JobView]


class JobPage(BaseModel):
    """One page of jobs, newest first; `next` is the token for the next page (null at the end)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"jobs": [_JOB_EXAMPLE], "next": None}]})
    jobs: list[JobView]
    next: str | None


_TASK_EXAMPLE: dict[str, Any] = {"id": "1234[7].myhost", "index": 7, "state": "FAILED", "exit_status": 3,
                                 "attempt": 1, "job_state": "F"}


class TaskRow(BaseModel):
    """One array task, as `qstat -t` lists it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_TASK_EXAMPLE]})
    id: str
    index: int
    state: JobState
    exit_status: int | None
    attempt: int
    job_state: str


class TaskView(TaskRow):
    """One array task (GET /jobs/1234[7]): its row plus the array's id, name, owner and queue."""

    model_config = _example(id="1234[7].myhost", index=7, state="RUNNING", exit_status=None, attempt=1,
                            job_state="R", array_id="1234[].myhost", name="sweep", owner="alice", queue="batch",
                            server="myhost", submitted_at=1796687640.3, started_at=1796687641.1,
                            exec_host="us-east-1/w-1a2b")
    array_id: str
    name: str
    owner: str
    queue: str
    server: str
    submitted_at: float
    started_at: float | None
    exec_host: str | None


class TaskPage(BaseModel):
    """An array's tasks from `offset`; `next` is the offset to ask for next (null at the end)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"tasks": [_TASK_EXAMPLE], "next": 100}]})
    tasks: list[TaskRow]
    next: int | None


class LogChunk(BaseModel):
    """Output from a byte offset: `data` is base64 (the bytes as the job wrote them)."""

    model_config = _example(data="aGVsbG8K", encoding="base64", offset=6, final=True, state="SUCCEEDED")
    data: str = Field(description="base64 of the bytes read")
    encoding: Literal["base64"]
    offset: int = Field(description="the byte offset to ask for next")
    final: bool = Field(description="no more output will come")
    state: JobState


class Multipart(BaseModel):
    """A large file's multipart upload: qsub asks POST /uploads/parts for its parts' URLs."""

    model_config = _example(upload_id="2~mY5Lq0r", part_size=67108864, parts=3)
    upload_id: str
    part_size: int = Field(description="bytes in each part but the last")
    parts: int = Field(description="how many parts the file makes")


class UploadUrls(BaseModel):
    """Where qsub PUTs each stage-in file; a job names them by the s3:// URIs under `prefix`."""

    model_config = _example(prefix="s3://hyperbatch-files/uploads/alice/0f3c/", upload="0f3c" * 8,
                            urls={"in.txt": "https://hyperbatch-files.s3.amazonaws.com/uploads/alice/0f3c/in.txt?..."},
                            multipart={"data/big.bin": {"upload_id": "2~mY5Lq0r", "part_size": 67108864, "parts": 3}},
                            expires_in=3600)
    prefix: str
    upload: str = Field(description="the upload's id: POST /uploads with it adds files under the same prefix")
    urls: dict[str, str] = Field(description="a presigned PUT URL by relative path")
    multipart: dict[str, Multipart] = Field(description="by relative path, each file too large for one PUT")
    expires_in: int = Field(description="seconds the URLs stay valid")


class PartUrl(BaseModel):
    model_config = _example(number=1, url="https://hyperbatch-files.s3.amazonaws.com/uploads/...?partNumber=1&...")
    number: int
    url: str = Field(description="a presigned UploadPart URL: PUT the part's bytes there, keep the ETag answered")


class PartUrls(BaseModel):
    """A page of a multipart upload's part URLs."""

    model_config = _example(urls=[{"number": 1, "url": "https://hyperbatch-files.s3.amazonaws.com/uploads/...?partNumber=1&..."}])
    urls: list[PartUrl]


class UploadDone(BaseModel):
    """The object a multipart upload completed (or aborted) was for."""

    model_config = _example(uri="s3://hyperbatch-files/uploads/alice/0f3c/data/big.bin")
    uri: str


class JobFile(BaseModel):
    model_config = _example(name="stdout", size=6, url="https://hyperbatch-files.s3.amazonaws.com/jobs/1234/stdout?...")
    name: str
    size: int
    url: str = Field(description="a presigned GET URL")


class JobFiles(BaseModel):
    """The files a job left (stdout, stderr, stage-out), its tasks' too."""

    model_config = _example(job="1234.myhost", files=[{"name": "stdout", "size": 6, "url": "https://..."}])
    job: str
    files: list[JobFile]


class QueueStatus(BaseModel):
    model_config = _example(name="batch", definition="standard", definitions=["standard"], counts={"QUEUED": 2},
                            backlog=2, workers={"us-east-1": 1})
    name: str
    definition: str
    definitions: list[str] = Field(description="the definitions (sizes) its jobs run on")
    counts: dict[str, int] = Field(description="jobs per state")
    backlog: int = Field(description="work items waiting for a worker")
    workers: dict[str, int] = Field(description="workers per region")


class Queues(BaseModel):
    """Each queue's jobs per state, backlog and workers per region; local mode adds `parked_events`."""

    model_config = _example(server="myhost", queues=[{"name": "batch", "definition": "standard",
                                                      "definitions": ["standard"], "counts": {"QUEUED": 2},
                                                      "backlog": 2, "workers": {"us-east-1": 1}}], parked_events=0)
    server: str
    queues: list[QueueStatus]
    parked_events: int | None = Field(None, description="local mode: events whose handling failed every try")


_NODE_EXAMPLE: dict[str, Any] = {
    "name": "us-east-1/w-1a2b", "state": "job-busy", "region": "us-east-1", "queue": "batch", "definition": "standard",
    "ncpus": 1, "mem_mib": 2048, "ngpus": 0, "jobs": ["1234.myhost"], "started_at": 1796687641.1}


class Node(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_NODE_EXAMPLE]})
    name: str
    state: Literal["free", "job-busy"]
    region: str
    queue: str
    definition: str
    ncpus: int
    mem_mib: int
    ngpus: int
    jobs: list[str]
    started_at: float | None


class Nodes(BaseModel):
    """The workers, as PBS nodes (pbsnodes)."""

    model_config = _example(server="myhost", nodes=[_NODE_EXAMPLE])
    server: str
    nodes: list[Node]


class Health(BaseModel):
    model_config = _example(status="ok", version="0.1.0", server="myhost")
    status: Literal["ok"]
    version: str
    server: str


class StepStatus(BaseModel):
    """One step of a workflow and its job now."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"step": "square", "job": "1235[].myhost", "state": "RUNNING", "exit_status": None,
         "depends_on": {"prepare": "afterok"}, "array": None}]})
    step: str
    job: str = Field(description="the step's job, as PBS names it (1234.myhost)")
    state: str = Field(description="the job's state, or UNKNOWN once its retention has passed")
    exit_status: int | None
    depends_on: dict[str, str] = Field(description="step -> afterok, afterany or afternotok")
    array: ArrayView | None


class WorkflowSummary(BaseModel):
    """One of the caller's workflows in a listing."""

    model_config = _example(name="sweep", created_at=1765000000.0, steps=4)
    name: str
    created_at: float
    steps: int = Field(description="how many steps it has")


class Workflows(BaseModel):
    """The caller's workflows (the newest of each name), newest first."""

    model_config = _example(workflows=[{"name": "sweep", "created_at": 1765000000.0, "steps": 4}])
    workflows: list[WorkflowSummary]


class WorkflowStatus(BaseModel):
    """A workflow as submitted: its name, owner, when, and each step's job."""

    model_config = _example(name="sweep", owner="alice", created_at=1765000000.0, steps=[
        {"step": "prepare", "job": "1234.myhost", "state": "SUCCEEDED", "exit_status": 0, "depends_on": {},
         "array": None}])
    name: str
    owner: str
    created_at: float
    steps: list[StepStatus]
