"""runner_answers against both VibSDK versions' zod schemas (tests/vibesdk_schemas.py), failures included."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from control_plane import runner_answers as answers
from control_plane.models import Run, Session
from control_plane.runner_answers import InstanceState, PreviewUrls
from tests.vibesdk_schemas import PORT, UPSTREAM, assert_valid, problems
from vibesdk_gcp.names import FILES_TEMPLATE

SESSION = "0b7c3f7e-3c55-4f37-9c1e-6c8d8f0a1b2c"
NOW = datetime(2026, 12, 1, 19, 0, 10, tzinfo=UTC)
URLS = PreviewUrls("https://preview.example/", "https://cp.example/preview/s/t/")


def session(**fields: Any) -> Session:
    base: dict[str, Any] = {
        "sessionId": SESSION,
        "templateName": "react-vite",
        "projectName": "demo",
        "status": "succeeded",
        "action": "createInstance",
        "runId": "r-create",
        "instanceId": SESSION,
        "createdAt": "2026-12-01T19:00:00+00:00",
        "updatedAt": "2026-12-01T19:00:05+00:00",
    }
    return Session.model_validate(base | fields)


def run(action: str, status: str = "succeeded", result: dict[str, Any] | None = None, error: str | None = None) -> Run:
    return Run(
        runId="r1",
        sessionId=SESSION,
        action=action,
        status=status,  # type: ignore[arg-type]
        transitions=[],
        result=result,
        error=error,
        createdAt="2026-12-01T19:00:00+00:00",
        updatedAt="2026-12-01T19:00:01+00:00",
    )


FAILED = {"status": "failed", "error": "command 'false' exited 1: boom"}
ANALYSIS_PART = {
    "issues": [
        {
            "message": "React Hook useEffect has a missing dependency: 'start'.",
            "filePath": "src/Counter.tsx",
            "line": 7,
            "column": 6,
            "severity": "error",
            "ruleId": "react-hooks/exhaustive-deps",
            "source": "eslint",
        },
        # What a checker that names no rule, line or severity we know leaves: nulls and odd values.
        {"message": "odd", "filePath": None, "line": None, "column": None, "severity": "fatal", "ruleId": None},
    ],
    "summary": {"errorCount": 1, "warningCount": 0, "infoCount": 0},
    "rawOutput": "STDOUT: ...",
    "skipped": None,
    "exitCode": 1,
}
# Each answer made of a run: (schema, maker, action, a succeeded run's result).
RUN_ANSWERS = [
    (
        "WriteFilesResponse",
        answers.write_files,
        "writeFiles",
        {
            "files": [
                {"file": "a.txt", "success": True},
                {"file": "wrangler.json", "success": False, "error": "File is forbidden to be modified"},
            ],
            "uploaded": 1,
        },
    ),
    (
        "GetFilesResponse",
        answers.get_files,
        "getFiles",
        {
            "files": [{"filePath": "a.txt", "fileContents": "hi"}],
            "missing": ["b.txt"],
            "links": [],
            "unreadableNames": None,
        },
    ),
    (
        "ExecuteCommandsResponse",
        answers.execute_commands,
        "executeCommands",
        {
            "results": [
                {
                    "command": "ls",
                    "success": True,
                    "exitCode": 0,
                    "output": "a.txt\n",
                    "error": "",
                    "truncated": False,
                    "durationMs": 3,
                    "log": "gs://x",
                },
                {"command": "sleep 9", "success": False, "exitCode": None, "output": "", "error": "[killed: timeout]"},
            ]
        },
    ),
    (
        "RuntimeErrorResponse",
        answers.errors,
        "getInstanceErrors",
        {
            "errors": [
                {
                    "timestamp": "2026-12-01T19:00:00+00:00",
                    "level": 50,
                    "message": "x is not defined",
                    "rawOutput": "ReferenceError: x is not defined",
                    "source": "build",
                    "filePath": None,
                    "line": None,
                    "column": None,
                },
                {"message": "no timestamp nor level"},
            ],
            "hasErrors": True,
        },
    ),
    ("ClearErrorsResponse", answers.clear_errors, "clearInstanceErrors", {"success": True, "cleared": 2}),
    (
        "StaticAnalysisResponse",
        answers.static_analysis,
        "runStaticAnalysisCode",
        {"success": True, "lint": ANALYSIS_PART, "typecheck": {"issues": [], "skipped": "no typecheck command"}},
    ),
    (
        "DeploymentResult",
        answers.deployment,
        "deployInstance",
        {
            "previewUrl": "https://p.example/",
            "files": 3,
            "build": {"command": "npm run build", "exitCode": 0, "output": "built", "error": ""},
            "worker": "wrangler.jsonc",
        },
    ),
    ("ShutdownResponse", answers.shutdown, "shutdownInstance", {"instanceId": SESSION, "shutdown": True}),
    ("GetLogsResponse", answers.logs, "getLogs", {"logs": {"stdout": "out", "stderr": ""}}),
    (
        "TemplateDetailsResponse",
        answers.template_details,
        "getTemplateDetails",
        {
            "templateDetails": {
                "name": "react-vite",
                "description": {"selection": "pick it", "usage": "use it"},
                "language": None,
                "frameworks": ["react"],
                "fileTree": {"path": "", "type": "directory", "children": [{"path": "package.json", "type": "file"}]},
                "allFiles": {"package.json": '{"dependencies": {"react": "^18"}, "devDependencies": {"vite": "^6"}}'},
                "importantFiles": ["package.json"],
                "dontTouchFiles": [],
                "redactedFiles": [],
            }
        },
    ),
]


@pytest.mark.parametrize(("schema", "make", "action", "result"), RUN_ANSWERS, ids=[case[0] for case in RUN_ANSWERS])
def test_a_succeeded_run_answers_in_both_versions_shapes(schema: str, make: Any, action: str, result: Any) -> None:
    made = make(run(action, result=result), result)
    assert made["success"] is True
    assert_valid(schema, made)


@pytest.mark.parametrize(("schema", "make", "action", "result"), RUN_ANSWERS, ids=[case[0] for case in RUN_ANSWERS])
def test_a_failed_run_answers_success_false_with_its_error(schema: str, make: Any, action: str, result: Any) -> None:
    made = make(run(action, **FAILED), {})
    assert made["success"] is False and made["error"] == FAILED["error"]
    assert_valid(schema, made)


def test_a_failing_command_is_its_own_failure_and_those_after_it_did_not_run() -> None:
    """As VibSDK's runner answers: the call succeeds, each command says how it went."""
    partial = {"results": [{"command": "false", "success": False, "exitCode": 1, "output": "", "error": "boom"}]}
    made = answers.execute_commands(run("executeCommands", **FAILED, result=partial), partial, ["false", "echo x"])
    assert made["success"] is True and made["message"].startswith("executed 0/2 commands successfully")
    assert made["results"] == [
        {"command": "false", "success": False, "output": "", "error": "boom", "exitCode": 1},
        {"command": "echo x", "success": False, "output": "", "error": "not run: 'false' failed"},
    ]
    assert_valid("ExecuteCommandsResponse", made)


def test_odd_issues_are_made_valid_and_counted() -> None:
    part = answers.code_issues(ANALYSIS_PART)
    assert part["issues"][1] == {"message": "odd", "filePath": "", "line": 0, "severity": "info"}
    assert part["summary"] == {"errorCount": 1, "warningCount": 0, "infoCount": 1}


def test_a_deploy_of_a_worker_says_what_is_not_served() -> None:
    result = RUN_ANSWERS[6][3]
    made = answers.deployment(run("deployInstance", result=result), result)
    assert made["deployedUrl"] == "https://p.example/" and made["output"] == "built"
    assert "wrangler.jsonc" in made["message"] and "does not run" in made["message"]
    plain = answers.deployment(run("deployInstance", result={"previewUrl": "https://p.example/"}), {"previewUrl": "u"})
    assert "Worker" not in plain["message"]


def test_template_details_carry_both_versions_fields() -> None:
    result = RUN_ANSWERS[9][3]
    details = answers.template_details(run("getTemplateDetails", result=result), result)["templateDetails"]
    assert details["files"] == [
        {"filePath": "package.json", "fileContents": result["templateDetails"]["allFiles"]["package.json"]}
    ]
    assert details["deps"] == {"react": "^18", "vite": "^6"} and details["disabled"] is False
    assert "language" not in details  # null in the result: absent, as zod's optional wants


def test_the_schemas_refuse_what_zod_refuses() -> None:
    """The schemas themselves: a null optional, a missing required field, a non-number."""
    assert problems(
        UPSTREAM, "BootstrapStatusResponse", {"success": True, "pending": False, "isHealthy": True, "error": None}
    )
    assert problems(UPSTREAM, "BootstrapStatusResponse", {"success": True, "isHealthy": True})
    assert problems(
        UPSTREAM, "ExecuteCommandsResponse", {"success": True, "results": [{"command": "x", "success": True}]}
    )
    assert problems(
        PORT,
        "GetInstanceResponse",
        {"success": True, "instance": answers.details(session(), URLS, NOW) | {"templateName": 1}},
    )
    no_template = {key: value for key, value in answers.details(session(), URLS, NOW).items() if key != "templateName"}
    assert problems(PORT, "GetInstanceResponse", {"success": True, "instance": no_template})
    assert not problems(UPSTREAM, "GetInstanceResponse", {"success": True, "instance": no_template})
    assert problems(UPSTREAM, "DeploymentResult", {"success": True})


# Answers made without a run: from the session and its createInstance run.


def test_bootstrap_answers_at_once_with_run_id_and_preview_url() -> None:
    made = answers.bootstrap(SESSION, URLS)
    assert made["runId"] == SESSION and made["previewURL"] == URLS.preview and made["tunnelURL"] == URLS.tunnel
    assert_valid("BootstrapResponse", made)


CREATE_CASES = [
    (session(), None, InstanceState.READY, True, False, True),
    (
        session(instanceId=None, status="queued"),
        run("createInstance", "queued"),
        InstanceState.PENDING,
        True,
        True,
        False,
    ),
    (
        session(instanceId=None, status="running"),
        run("createInstance", "running"),
        InstanceState.PENDING,
        True,
        True,
        False,
    ),
    (
        session(instanceId=None, status="failed"),
        run("createInstance", **FAILED),
        InstanceState.FAILED,
        False,
        False,
        False,
    ),
    (
        session(instanceId=None, action="shutdownInstance"),
        run("createInstance"),
        InstanceState.SHUT_DOWN,
        False,
        False,
        False,
    ),
    (session(instanceId=None, action="writeFiles"), None, InstanceState.NONE, False, False, False),
]


@pytest.mark.parametrize(("found", "create", "state", "success", "pending", "healthy"), CREATE_CASES)
def test_status_follows_the_instance_not_the_latest_run(
    found: Session, create: Run | None, state: InstanceState, success: bool, pending: bool, healthy: bool
) -> None:
    assert answers.instance_state(found, create) is state
    made = answers.status(found, create, URLS)
    assert (made["success"], made["pending"], made["isHealthy"]) == (success, pending, healthy)
    assert ("error" in made) is not success
    assert_valid("BootstrapStatusResponse", made)
    details = answers.instance(found, create, URLS, NOW)
    assert details["success"] is success
    assert_valid("GetInstanceResponse", details)


def test_another_run_failing_leaves_the_instance_healthy() -> None:
    made = answers.status(session(status="failed", action="executeCommands"), None, URLS)
    assert made["isHealthy"] is True and made["success"] is True


def test_a_failed_create_says_why_and_a_shut_down_one_says_so() -> None:
    failed = answers.status(session(instanceId=None, status="failed"), run("createInstance", **FAILED), URLS)
    assert FAILED["error"] in failed["error"]
    gone = answers.status(session(instanceId=None, action="shutdownInstance"), run("createInstance"), URLS)
    assert gone["error"] == f"instance {SESSION} was shut down"


def test_details_carry_what_both_versions_require() -> None:
    made = answers.details(session(templateName=None), None, NOW)
    assert made["runId"] == SESSION and made["uptime"] == 10.0 and made["templateName"] == FILES_TEMPLATE
    assert "previewURL" not in made
    assert_valid("GetInstanceResponse", {"success": True, "instance": made})


def test_the_list_holds_the_instances_that_exist() -> None:
    made = answers.instances([(session(), URLS), (session(sessionId="gone", instanceId=None), None)], NOW)
    assert made["count"] == 1 and made["instances"][0]["runId"] == SESSION
    assert_valid("ListInstancesResponse", made)
    assert_valid("ListInstancesResponse", answers.instances([], NOW))


def test_github_push_says_it_is_unsupported() -> None:
    assert "not supported" in answers.GITHUB_PUSH_UNSUPPORTED["error"]
    assert_valid("GitHubPushResponse", answers.GITHUB_PUSH_UNSUPPORTED)
