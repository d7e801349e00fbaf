"""infra/gcp, the Dockerfile and cloudbuild.yaml, checked without a cloud account."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from eventarc.definitions import SANDBOX_JOB_TRIGGER, terraform_inputs
from vibesdk_gcp import names

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra" / "gcp"
MODULES = sorted(p for p in (INFRA / "modules").iterdir() if p.is_dir())
TF_FILES = sorted(INFRA.rglob("*.tf"))
MODULE_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md")


def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(path: Path, kind: str) -> dict[str, dict[str, Any]]:
    """name -> body of every `kind "name" {}` block in a file."""
    found: dict[str, dict[str, Any]] = {}
    for entry in hcl2.loads(path.read_text()).get(kind, []):
        for name, body in entry.items():
            # Resources come as {type: {name: body}}: two of one type merge by name.
            found.setdefault(unquote(name), {}).update(body)
    return found


def declared_variables(folder: Path) -> dict[str, dict[str, Any]]:
    return blocks(folder / "variables.tf", "variable")


def used_variables(folder: Path) -> set[str]:
    return {m for tf in folder.glob("*.tf") for m in re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", tf.read_text())}


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_tf_file_parses(path: Path) -> None:
    assert isinstance(hcl2.loads(path.read_text()), dict)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_layout(module: Path) -> None:
    assert [name for name in MODULE_FILES if not (module / name).exists()] == []


@pytest.mark.parametrize("folder", [INFRA, *MODULES], ids=lambda p: p.name)
def test_variables_and_outputs_are_typed_and_described(folder: Path) -> None:
    for name, body in declared_variables(folder).items():
        assert "type" in body and unquote(body.get("description", "")), f"{folder.name}: variable {name}"
    for name, body in blocks(folder / "outputs.tf", "output").items():
        assert unquote(body.get("description", "")), f"{folder.name}: output {name}"


@pytest.mark.parametrize("folder", [INFRA, *MODULES], ids=lambda p: p.name)
def test_every_variable_used_is_declared(folder: Path) -> None:
    assert used_variables(folder) - set(declared_variables(folder)) == set()


@pytest.mark.parametrize("folder", [INFRA, *MODULES], ids=lambda p: p.name)
def test_provider_pinned_to_a_range(folder: Path) -> None:
    text = (folder / "versions.tf").read_text()
    version = re.search(r'google\s*=\s*{[^}]*version\s*=\s*"([^"]+)"', text, re.S)
    # `~> 7.N` (7.N up to 8.0) or an explicit `>= a, < b`: never an open-ended range.
    assert version and (
        re.fullmatch(r"~> \d+\.\d+", version.group(1))
        or (">=" in version.group(1) and "<" in version.group(1).replace("<=", ""))
    )


def root_modules() -> dict[str, dict[str, Any]]:
    return blocks(INFRA / "main.tf", "module")


@pytest.mark.parametrize("call", sorted(root_modules()))
def test_module_inputs_exist_and_required_ones_are_given(call: str) -> None:
    body = root_modules()[call]
    source = INFRA / unquote(body["source"])
    variables = declared_variables(source)
    given = {
        key
        for key in body
        if not key.startswith("__") and key not in ("source", "depends_on", "providers", "count", "for_each")
    }
    assert given - set(variables) == set(), f"module {call} passes inputs its source does not declare"
    required = {name for name, spec in variables.items() if "default" not in spec}
    assert required - given == set(), f"module {call} leaves required inputs unset"


def module_text(call: str) -> str:
    text = (INFRA / "main.tf").read_text()
    start = text.index(f'module "{call}" {{')
    depth = 0
    for end in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start:end]
    raise AssertionError(f"module {call} has no closing brace")


def environment_of(call: str) -> set[str]:
    text = module_text(call)
    env = set(re.findall(r"^\s*([A-Z][A-Z0-9_]+)\s*=", text, re.M))
    if "local.common_env" in text:
        common = re.search(r"common_env = {(.*?)}", (INFRA / "main.tf").read_text(), re.S)
        assert common
        env |= set(re.findall(r"([A-Z][A-Z0-9_]+)\s*=", common.group(1)))
    return env


@pytest.mark.parametrize(
    ("call", "service"),
    [
        ("control_plane", names.CONTROL_PLANE_SERVICE),
        ("sandbox_job", names.SANDBOX_JOB_SERVICE),
        ("status_recorder", names.STATUS_RECORDER_SERVICE),
        ("sweeper", names.SWEEPER_SERVICE),
    ],
)
def test_each_service_gets_the_environment_it_reads(call: str, service: str) -> None:
    assert set(names.SERVICE_ENV[service]) - environment_of(call) == set()
    assert f"local.definitions.entry_points[local.services.{call}]" in module_text(call)


def test_definitions_json_is_the_codes() -> None:
    assert json.loads((INFRA / "definitions.json").read_text()) == json.loads(json.dumps(terraform_inputs())), (
        "regenerate it: python -m eventarc.definitions > infra/gcp/definitions.json"
    )
    assert 'jsondecode(file("${path.module}/definitions.json"))' in (INFRA / "main.tf").read_text()


def test_names_reach_terraform_from_the_definitions_only() -> None:
    hardcoded = [
        value
        for value in (
            names.REQUESTS_TOPIC,
            names.STATUS_TOPIC,
            names.DEAD_LETTER_TOPIC,
            names.STATUS_RECORDER_SUBSCRIPTION,
            *names.BUCKETS,
            names.RUNS_COLLECTION,
        )
        if any(value in tf.read_text() for tf in TF_FILES)
    ]
    assert hardcoded == []


def test_sweeper_is_scheduled_with_its_own_identity() -> None:
    text = (INFRA / "main.tf").read_text()
    scheduler = text[text.index('resource "google_cloud_scheduler_job" "sweep"') :]
    assert "module.sweeper.uri" in scheduler and 'emails["vibesdk-scheduler"]' in scheduler
    assert 'invokers              = { scheduler = module.iam.members["vibesdk-scheduler"] }' in module_text("sweeper")


# The iam module's own guard names the two roles it refuses; nothing else in infra/gcp may.
BASIC_ROLES_GUARD = '!contains(["roles/owner", "roles/editor"], role)'
BASIC_ROLES_MESSAGE = 'error_message = "No service account may hold roles/owner or roles/editor."'


def basic_roles(text: str) -> list[str]:
    """Every mention of roles/owner or roles/editor, wherever it stands (a list's first, middle or last item)."""
    return re.findall(r"roles/(?:owner|editor)\b", text)


def test_no_owner_or_editor_roles() -> None:
    sample = 'project_roles = ["roles/editor", "roles/x", "roles/owner", "roles/y"]\nrole = "roles/owner"'
    assert basic_roles(sample) == ["roles/editor", "roles/owner", "roles/owner"]
    assert basic_roles('"roles/editorial.viewer", "roles/ownership"') == []
    # What Terraform reads: the .tf files, the definitions they decode and the example variables.
    inputs = [*TF_FILES, INFRA / "definitions.json", INFRA / "terraform.tfvars.example"]
    text = "\n".join(path.read_text() for path in inputs)
    assert text.count(BASIC_ROLES_GUARD) == 1 and text.count(BASIC_ROLES_MESSAGE) == 1  # the module refuses them
    assert basic_roles(text.replace(BASIC_ROLES_GUARD, "").replace(BASIC_ROLES_MESSAGE, "")) == []


def test_every_checkov_skip_carries_its_reason() -> None:
    for tf in TF_FILES:
        for skip in re.findall(r"checkov:skip=(.*)", tf.read_text()):
            check, _, reason = skip.partition(":")
            assert re.fullmatch(r"CKV2?_GCP_\d+", check.strip()) and len(reason.strip()) > 10, f"{tf}: {skip}"


def checkov() -> str:
    found = os.environ.get("CHECKOV") or shutil.which("checkov") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    assert Path(found).exists(), "checkov is missing: `make test` installs it into .venv-checkov"
    return found


def test_checkov_reports_no_failed_check() -> None:
    result = subprocess.run(
        [checkov(), "-d", str(INFRA), "--framework", "terraform", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
    assert failed == [] and summary["passed"] > 0


# --- the container image and the pipeline


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and re.search(r":\d+\.\d+\.\d+-slim", base.group(1)), "the base image is pinned to a slim release"
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "HEALTHCHECK" in text and "bubblewrap" in text
    assert "pip install --no-compile -r requirements.txt" in text
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (ROOT / source).exists(), source
    for argv in names.ENTRY_POINTS.values():
        if argv[0] == "python":
            assert (ROOT / argv[2]).is_dir()
        else:
            assert (ROOT / argv[argv.index("--source") + 1]).is_file()


STEP_FIELDS = {
    "name",
    "args",
    "env",
    "dir",
    "id",
    "waitFor",
    "entrypoint",
    "secretEnv",
    "volumes",
    "timeout",
    "script",
    "allowFailure",
    "allowExitCodes",
    "automapSubstitutions",
}
TOP_FIELDS = {
    "steps",
    "timeout",
    "queueTtl",
    "logsBucket",
    "options",
    "substitutions",
    "tags",
    "serviceAccount",
    "secrets",
    "availableSecrets",
    "artifacts",
    "images",
}
BUILTIN_SUBSTITUTIONS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "BUILD_ID",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REVISION_ID",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT",
    "SERVICE_ACCOUNT_EMAIL",
}


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "cloudbuild.yaml").read_text()))


@pytest.fixture(scope="module")
def ci_build() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "cloudbuild-ci.yaml").read_text()))


def test_cloudbuild_known_fields_only(build: dict[str, Any]) -> None:
    assert set(build) <= TOP_FIELDS
    for step in build["steps"]:
        assert set(step) <= STEP_FIELDS, step.get("id")
        assert step.get("id") and step.get("name")
    assert build["timeout"] and build["images"]


def test_cloudbuild_substitutions_are_defined(build: dict[str, Any]) -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    body = text.split("\nsubstitutions:", 1)[1]
    used = set(
        re.findall(r"(?<!\$)\$\{?([A-Z_][A-Z0-9_]*)", "\n".join(line.split("#")[0] for line in body.splitlines()))
    )
    defined = set(build["substitutions"]) | BUILTIN_SUBSTITUTIONS
    secrets = {secret["env"] for secret in build.get("availableSecrets", {}).get("secretManager", [])}
    assert used - defined - secrets == set()
    for step in build["steps"]:
        assert set(step.get("secretEnv", [])) <= secrets


def test_cloudbuild_references_existing_files(build: dict[str, Any]) -> None:
    for step in build["steps"]:
        if "dir" in step:
            assert (ROOT / step["dir"]).is_dir()
        script = " ".join(step.get("args", []))
        for module in re.findall(r"python -m ([\w.]+)", script):
            assert (ROOT / (module.replace(".", "/") + ".py")).exists() or (ROOT / module.replace(".", "/")).is_dir()
        for file in re.findall(r"-r (\S+)", script):
            assert (ROOT / file).exists()
        if "make test" in script:
            assert "test:" in (ROOT / "Makefile").read_text()
    assert (ROOT / "Dockerfile").exists()


def test_cloudbuild_digest_flows_from_build_to_deploy(build: dict[str, Any]) -> None:
    steps = {step["id"]: index for index, step in enumerate(build["steps"])}
    push = build["steps"][steps["push"]]["args"][-1]
    deploy = build["steps"][steps["deploy"]]["args"][-1]
    assert "RepoDigests" in push and "> /workspace/image_digest.txt" in push
    assert "image=$$(cat /workspace/image_digest.txt)" in deploy
    assert steps["build"] < steps["push"] < steps["deploy"] < steps["smoke"]


def test_ci_and_cd_run_as_different_accounts(build: dict[str, Any], ci_build: dict[str, Any]) -> None:
    deploy, ci = build["serviceAccount"], ci_build["serviceAccount"]
    assert deploy.endswith("/vibesdk-deploy@${PROJECT_ID}.iam.gserviceaccount.com")
    assert ci.endswith("/vibesdk-ci@${PROJECT_ID}.iam.gserviceaccount.com")
    # Tests install third-party packages: never in the build that holds deploy rights.
    assert not any("make test" in " ".join(step.get("args", [])) for step in build["steps"])
    assert any("make test" in " ".join(step.get("args", [])) for step in ci_build["steps"])
    assert re.search(r":\d+\.\d+\.\d+-emulators$", ci_build["substitutions"]["_SDK_IMAGE"])


def flags(command: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+)=(\S+)", command))


def test_pipeline_tunes_the_trigger_subscription_as_defined(build: dict[str, Any]) -> None:
    steps = {step["id"]: step for step in build["steps"]}
    order = [step["id"] for step in build["steps"]]
    assert order.index("deploy") < order.index("tune-trigger-subscription") < order.index("smoke")
    script = " ".join(steps["tune-trigger-subscription"]["args"])
    assert "gcloud pubsub subscriptions update" in script and "trigger_subscription.txt" in script
    assert "terraform output -raw trigger_subscription" in " ".join(steps["deploy"]["args"])
    tuned = SANDBOX_JOB_TRIGGER.tuned
    given = flags(script)
    assert given["ack-deadline"] == str(tuned.ack_deadline_seconds)
    assert given["dead-letter-topic"] == f"projects/${{PROJECT_ID}}/topics/{tuned.dead_letter_topic}"
    assert given["max-delivery-attempts"] == str(tuned.max_delivery_attempts)
    assert given["min-retry-delay"] == f"{tuned.retry.minimum_backoff_seconds}s"
    assert given["max-retry-delay"] == f"{tuned.retry.maximum_backoff_seconds}s"
    # Ordering can never be turned on for an existing subscription; the job orders a session itself.
    assert "ordering" not in script and not tuned.message_ordering
    # The dead-letter policy works only if Pub/Sub's agent may take messages off the trigger's subscription.
    assert (
        "trigger = google_eventarc_trigger.sandbox_job.transport[0].pubsub[0].subscription"
        in (INFRA / "modules" / "sandbox" / "main.tf").read_text()
    )


def variable_default(name: str) -> Any:
    return declared_variables(INFRA)[name]["default"]


# One working copy of the react-vite template with its dependency tree, as `du -sm` counts it
# (4 KiB pages, as the in-memory file system holds them): 92 MiB for its 6,091 files, measured on
# the tree functions/dependencies.py unpacked from templates/react-vite/package-lock.json
# (76 MiB of file contents), rounded up. The largest of the templates' trees.
REACT_VITE_TREE_MIB = 96


def test_job_instance_memory_holds_its_in_memory_disks() -> None:
    """Cloud Run's file system is the instance's memory: each running action's command, workspace
    and /tmp, and what the instance keeps between actions: its working copies, each a copy of its
    dependency tree under Cloud Run sandboxes (no hard links there, functions/isolation.py), and the
    trees they were copied from plus the few unused ones kept (functions/local_copies.py)."""
    from functions.isolation import CloudRunSandbox
    from functions.local_copies import KEPT_UNUSED_TREES

    assert CloudRunSandbox.hard_links_allowed is False, "working copies would share their trees' pages"
    process_reserve_mib = 1024  # the job's own Python process, its clients and a command's buffers
    concurrency = variable_default("job_concurrency")
    kept_copies = variable_default("job_local_workspaces")
    assert kept_copies >= concurrency, "every running action keeps its working copy"
    running = concurrency * (
        variable_default("command_memory_mib") + variable_default("workspace_mib") + variable_default("sandbox_tmp_mib")
    )
    idle_copies = (kept_copies - concurrency) * REACT_VITE_TREE_MIB  # the running ones count in workspace_mib
    trees = (kept_copies + KEPT_UNUSED_TREES) * REACT_VITE_TREE_MIB
    assert running + idle_copies + trees + process_reserve_mib <= variable_default("job_memory_mib")
    text = module_text("sandbox_job")
    for setting in (
        "var.job_concurrency",
        "var.job_memory_mib",
        "var.workspace_mib",
        "var.sandbox_tmp_mib",
        "var.command_memory_mib",
        "VIBESDK_MAX_LOCAL_WORKSPACES    = tostring(var.job_local_workspaces)",
    ):
        assert setting in text
    # Left unset, the job would keep the settings' default, every one a tree in memory.
    from vibesdk_gcp.settings import Settings

    assert Settings.max_local_workspaces > kept_copies
    assert SANDBOX_JOB_TRIGGER.tuned.ack_deadline_seconds <= 3600  # Cloud Run's request timeout ceiling


def test_cloud_storage_may_write_the_access_logs() -> None:
    resources = blocks(INFRA / "modules" / "storage" / "main.tf", "resource")
    grant = resources["google_storage_bucket_iam_member"]['"access_logs_delivery"']
    assert unquote(grant["bucket"]) == "${google_storage_bucket.access_logs.name}"
    assert unquote(grant["role"]) == "roles/storage.objectCreator"
    assert unquote(grant["member"]) == "group:cloud-storage-analytics@google.com"
    buckets = resources["google_storage_bucket"]['"buckets"']
    assert unquote(buckets["logging"][0]["log_bucket"]) == "${google_storage_bucket.access_logs.name}"


def test_ci_may_read_the_source_gcloud_stages(ci_build: dict[str, Any]) -> None:
    """`gcloud builds submit` uploads to gs://PROJECT_cloudbuild; CI's account has no project role."""
    grant = blocks(INFRA / "main.tf", "resource")["google_storage_bucket_iam_member"]['"ci_reads_build_source"']
    account = ci_build["serviceAccount"].rsplit("/", 1)[1].replace("${PROJECT_ID}", "${var.project_id}")
    assert unquote(grant["bucket"]) == "${var.project_id}_cloudbuild"
    assert unquote(grant["role"]) == "roles/storage.objectViewer"
    assert unquote(grant["member"]) == f"serviceAccount:{account}"
    deploy = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert "gs://${PROJECT_ID}_cloudbuild --member=serviceAccount:$CI_SA --role=roles/storage.objectViewer" in deploy


def test_cd_applies_with_the_operators_settings(build: dict[str, Any]) -> None:
    """The operators' settings never reach the uploaded source, so CD fetches them from beside the
    state before it applies; an apply without them would remove the operators' bindings."""
    assert "*.tfvars" in (ROOT / ".gcloudignore").read_text()
    order = [step["id"] for step in build["steps"]]
    assert order.index("operator-settings") < order.index("deploy")
    steps = {step["id"]: step for step in build["steps"]}
    fetch = " ".join(steps["operator-settings"]["args"])
    assert 'gcloud storage cp "gs://${_TF_STATE_BUCKET}/settings/terraform.tfvars" infra/gcp/terraform.tfvars' in fetch
    assert "exit 1" in fetch, "a missing settings file stops the deploy"
    assert steps["deploy"]["dir"] == "infra/gcp"  # where Terraform reads terraform.tfvars on its own
    given = set(re.findall(r'-var "([a-z_]+)=', " ".join(steps["deploy"]["args"])))
    assert "operators" not in given and "secrets" not in given
    assert "gs://$PROJECT_ID-tfstate/settings/terraform.tfvars" in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_ci_runs_the_tests_where_bubblewrap_can_isolate(ci_build: dict[str, Any]) -> None:
    """A build step's container may be refused user namespaces: the suite runs in a privileged
    container on the build VM's Docker daemon, with the source copied in."""
    (step,) = [step for step in ci_build["steps"] if "make test" in " ".join(step.get("args", []))]
    script = " ".join(step["args"])
    assert step["name"] == "${_DOCKER_IMAGE}"
    assert "docker create --privileged --network=cloudbuild" in script and "${_SDK_IMAGE}" in script
    assert script.index("docker cp . ") < script.index("docker start --attach")
    assert "bubblewrap" in script and "umask 022" in script


def test_nothing_that_costs_money_idle_is_on_by_default() -> None:
    assert variable_default("enable_database") is False
    main = (INFRA / "main.tf").read_text()
    assert (
        "count      = var.enable_database ? 1 : 0" in main
        and "count                        = var.enable_database ? 1 : 0" in main
    )
    everything = "\n".join(tf.read_text() for tf in TF_FILES)
    assert "google_vpc_access_connector" not in everything, "a connector runs at least two instances all the time"
    assert unquote(declared_variables(INFRA / "modules" / "sql")["availability_type"]["default"]) == "ZONAL"
    for call in ("control_plane", "sandbox_job", "status_recorder", "sweeper"):
        assert "min_instances" not in module_text(call)
    # The previews' load balancer bills its forwarding rule by the hour: only with a preview domain.
    assert unquote(variable_default("preview_domain")) == ""
    assert 'count      = var.preview_domain == "" ? 0 : 1' in module_text("previews")


def test_the_previews_load_balancer_reaches_nothing_but_previews() -> None:
    """Only *.{domain} goes to the control plane; any other Host (the bare IP) is answered 404 by the
    load balancer, and a preview domain without public_api is refused at plan time."""
    module = INFRA / "modules" / "previews"
    url_map = blocks(module / "main.tf", "resource")["google_compute_url_map"]['"previews"']
    assert "default_service" not in url_map
    abort = url_map["default_route_action"][0]["fault_injection_policy"][0]["abort"][0]
    assert (abort["http_status"], abort["percentage"]) == (404, 100)
    (rule,) = url_map["host_rule"]
    assert [unquote(host) for host in rule["hosts"]] == ["*.${var.domain}"]
    (matcher,) = url_map["path_matcher"]
    assert unquote(matcher["name"]) == unquote(rule["path_matcher"])
    (validation,) = declared_variables(module)["public_api"]["validation"]
    assert (
        unquote(validation["condition"]) == "${var.public_api}" and "public_api = true" in validation["error_message"]
    )
    assert "public_api = var.public_api" in module_text("previews")


def test_no_secret_reaches_terraform_state() -> None:
    everything = "\n".join(tf.read_text() for tf in TF_FILES)
    assert "password" not in everything.replace("password_", "").lower().replace("no password", "")
    assert "*.tfvars" in (ROOT / ".gitignore").read_text() and "*.tfvars" in (ROOT / ".gcloudignore").read_text()


def test_deploy_refuses_to_run_without_an_alert_address(build: dict[str, Any]) -> None:
    deploy = " ".join(next(step for step in build["steps"] if step["id"] == "deploy")["args"])
    assert 'test -n "${_ALERT_EMAIL}"' in deploy and deploy.index("test -n") < deploy.index("terraform apply")
    assert build["substitutions"]["_ALERT_EMAIL"] == ""
    validation = declared_variables(INFRA)["alert_emails"]["validation"]
    assert "regex" in str(validation)


def test_the_job_runs_commands_in_cloud_run_sandboxes_only(build: dict[str, Any]) -> None:
    # Terraform keeps the launcher on (provider 7.43.0+): no apply makes a revision without it, so
    # no pipeline step turns it on afterwards.
    modules = root_modules()
    assert modules["sandbox_job"]["sandbox_launcher"] is True
    assert unquote(modules["sandbox_job"]["launch_stage"]) == "BETA"
    assert [call for call, body in modules.items() if body.get("sandbox_launcher") is True] == ["sandbox_job"]
    runtime = hcl2.loads((INFRA / "modules" / "runtime" / "main.tf").read_text())
    service = runtime["resource"][0]['"google_cloud_run_v2_service"']['"service"']
    (container,) = service["template"][0]["containers"]
    assert container["sandbox_launcher"] == "${var.sandbox_launcher}"
    assert declared_variables(INFRA / "modules" / "runtime")["sandbox_launcher"]["default"] is False
    assert service["template"][0]["execution_environment"] == '"EXECUTION_ENVIRONMENT_GEN2"'
    steps = " ".join(json.dumps(step) for step in build["steps"])
    assert "enable-sandboxes" not in steps and "--sandbox-launcher" not in steps
    job = module_text("sandbox_job")
    # Set explicitly, never "auto": on Google Cloud the job must not settle for another backend.
    assert 'VIBESDK_SANDBOX_BACKEND         = "cloud-run"' in job


def test_the_control_planes_concurrency_fits_its_listeners_and_one_owners_waits() -> None:
    """Each request holds at most one Firestore listener: Cloud Run scales out before an instance
    refuses a wait, and one VibSDK deployment (one key) may fill an instance with its calls."""
    from vibesdk_gcp.runs.watches import MAX_LISTENERS

    main = (INFRA / "main.tf").read_text()
    found = re.search(r"^\s*control_plane_concurrency\s*=\s*(\d+)$", main, re.M)
    assert found and int(found.group(1)) <= MAX_LISTENERS
    assert "concurrency = local.control_plane_concurrency" in module_text("control_plane")
    assert "VIBESDK_MAX_WAITS_PER_OWNER = tostring(local.control_plane_concurrency)" in module_text("control_plane")


def test_previews_over_http_are_sent_to_https_on_the_same_address() -> None:
    resources = blocks(INFRA / "modules" / "previews" / "main.tf", "resource")
    redirect = resources["google_compute_url_map"]['"http_redirect"']["default_url_redirect"][0]
    assert redirect["https_redirect"] is True
    http = resources["google_compute_global_forwarding_rule"]['"http_redirect"']
    assert unquote(http["port_range"]) == "80"
    assert http["ip_address"] == resources["google_compute_global_forwarding_rule"]['"previews"']["ip_address"]


def test_terraform_never_turns_loopback_webhooks_on() -> None:
    """VIBESDK_WEBHOOK_LOOPBACK is the local stack's (devstack/stack.py): on Google Cloud a webhook goes
    to public addresses only (functions/webhooks.py), whatever the deployment sets."""
    deployed = [path for path in INFRA.rglob("*") if path.is_file() and path.suffix != ".md"]
    deployed += [ROOT / "cloudbuild.yaml", ROOT / "cloudbuild-ci.yaml", ROOT / "Dockerfile"]
    assert [path for path in deployed if "VIBESDK_WEBHOOK_LOOPBACK" in path.read_text()] == []


def test_a_job_instance_is_started_only_once_its_warm_up_has_ended() -> None:
    """Outside requests a Cloud Run instance (cpu_idle) has no CPU for a background warm-up: the
    job's startup probe asks /readyz, which answers 200 only once functions/warmup.py has ended."""
    modules = root_modules()
    assert unquote(modules["sandbox_job"]["startup_path"]) == "/readyz"
    assert [call for call, body in modules.items() if "startup_path" in body] == ["sandbox_job"]
    runtime = hcl2.loads((INFRA / "modules" / "runtime" / "main.tf").read_text())
    service = runtime["resource"][0]['"google_cloud_run_v2_service"']['"service"']
    (container,) = service["template"][0]["containers"]
    assert container["resources"][0]["cpu_idle"] is True  # why the probe must wait
    (probe,) = container["startup_probe"]
    # Cloud Run allows a startup probe 240 s at most: this one gives the warm-up 200.
    assert "2" in str(probe["period_seconds"]) and "100" in str(probe["failure_threshold"])
    assert "var.startup_path" in json.dumps(probe["dynamic"])
    # That the route answers so, in the job's real processes: tests/e2e/test_instances.py.
