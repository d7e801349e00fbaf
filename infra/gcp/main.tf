# The VibSDK runtime on Google Cloud: every module composed, names from definitions.json.
provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

locals {
  definitions = jsondecode(file("${path.module}/definitions.json"))
  services    = local.definitions.services
  buckets     = local.definitions.buckets

  # Environment each service reads (definitions.json's service_env lists the names; a test holds them).
  control_plane_concurrency = 48
  common_env = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    VIBESDK_BUCKET_PREFIX  = var.bucket_prefix
    VIBESDK_PREVIEW_ORIGIN = var.preview_origin
    # The job names previews in deployInstance's result, the control plane serves them.
    VIBESDK_PREVIEW_DOMAIN = var.preview_domain
  }
  # Cloud Run's deterministic addresses: a service's own URL, known before it exists (token audiences).
  service_url = { for key, name in local.services : key => "https://${name}-${data.google_project.project.number}.${var.region}.run.app" }
  control_plane_url = local.service_url.control_plane
}

data "google_project" "project" {
  project_id = var.project_id
}

module "iam" {
  source     = "./modules/iam"
  project_id = var.project_id
  accounts = {
    "vibesdk-control-plane" = {
      display_name  = "VibSDK control plane"
      description   = "Writes runs, publishes requests, serves previews."
      project_roles = ["roles/datastore.user"]
    }
    "vibesdk-sandbox-job" = {
      display_name  = "VibSDK sandbox job"
      description   = "Runs sandbox actions, publishes status."
      project_roles = ["roles/datastore.user"]
    }
    "vibesdk-status-recorder" = {
      display_name  = "VibSDK status recorder"
      description   = "Records status transitions in Firestore."
      project_roles = ["roles/datastore.user"]
    }
    "vibesdk-eventarc" = {
      display_name  = "VibSDK Eventarc trigger"
      description   = "Identity Eventarc delivers sandbox requests with."
      project_roles = ["roles/eventarc.eventReceiver"]
    }
    "vibesdk-push" = {
      display_name = "VibSDK status push"
      description  = "Identity in the OIDC token of status pushes."
    }
    "vibesdk-sweeper" = {
      display_name  = "VibSDK stale-run sweeper"
      description   = "Ends runs whose sandbox job is gone for good."
      project_roles = ["roles/datastore.user"]
    }
    "vibesdk-scheduler" = {
      display_name = "VibSDK scheduler"
      description  = "Identity Cloud Scheduler calls the sweeper with."
    }
  }
}

module "storage" {
  source        = "./modules/storage"
  project_id    = var.project_id
  location      = var.storage_location
  name_prefix   = var.bucket_prefix
  force_destroy = var.force_destroy
  buckets = {
    (local.buckets.templates)  = {}
    # deps/: installed dependency trees, one per lockfile, rebuilt on demand (functions/dependencies.py).
    (local.buckets.workspaces) = { noncurrent_days = 3, prefix_days = { "deps/" = 30 } }
    (local.buckets.logs)       = { delete_after_days = 30 }
    (local.buckets.previews)   = { delete_after_days = 30 }
  }
}

# Least privilege on the buckets, as tests/e2e/test_iam.py derives it from what each unit really
# calls: read templates, write only what each unit writes. Keys are static names (plan-time known).
resource "google_storage_bucket_iam_member" "access" {
  for_each = {
    job_templates      = { bucket = local.buckets.templates, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-sandbox-job"] }
    job_workspaces     = { bucket = local.buckets.workspaces, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    job_logs           = { bucket = local.buckets.logs, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    job_previews       = { bucket = local.buckets.previews, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    control_templates  = { bucket = local.buckets.templates, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-control-plane"] }
    control_previews   = { bucket = local.buckets.previews, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-control-plane"] }
    control_logs       = { bucket = local.buckets.logs, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-control-plane"] }
  }

  bucket = module.storage.bucket_names[each.value.bucket]
  role   = each.value.role
  member = each.value.member
}

# `gcloud builds submit` stages the source in gs://PROJECT_cloudbuild, and a build that runs as a
# service account of its own reads it as that account: CI's holds no project role, so it is granted
# the reading here (docs/DEPLOY.md grants it once before the first build; this keeps it).
resource "google_storage_bucket_iam_member" "ci_reads_build_source" {
  bucket = "${var.project_id}_cloudbuild"
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:vibesdk-ci@${var.project_id}.iam.gserviceaccount.com"
}

module "firestore" {
  source             = "./modules/firestore"
  project_id         = var.project_id
  location           = var.firestore_location
  runs_collection    = local.definitions.collection
  runs_subcollection = local.definitions.subcollection

  queued_requests_subcollection = local.definitions.queued_requests_subcollection
}

# Publishing, per topic, as the code publishes (tests/e2e/test_iam.py): requests from the control
# plane and from the job (a live preview's rebuild, functions/live.py), status from the job, dead letters from the job and the recorder (they set aside what they
# can never process), and both source topics from operators replaying dead letters.
resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = merge(
    {
      control_plane_requests = { topic = local.definitions.topics.requests, member = module.iam.members["vibesdk-control-plane"] }
      job_requests           = { topic = local.definitions.topics.requests, member = module.iam.members["vibesdk-sandbox-job"] }
      job_status             = { topic = local.definitions.topics.status, member = module.iam.members["vibesdk-sandbox-job"] }
      job_dead_letters       = { topic = local.definitions.topics.dead_letter, member = module.iam.members["vibesdk-sandbox-job"] }
      recorder_dead_letters  = { topic = local.definitions.topics.dead_letter, member = module.iam.members["vibesdk-status-recorder"] }
    },
    { for name, member in var.operators : "operator_${name}_requests" => { topic = local.definitions.topics.requests, member = member } },
    { for name, member in var.operators : "operator_${name}_status" => { topic = local.definitions.topics.status, member = member } },
  )

  project = var.project_id
  topic   = module.sandbox.topic_names[each.value.topic]
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

# Secrets the operator adds for the units (none are needed by default); accessors by account id.
module "secrets" {
  source            = "./modules/secrets"
  project_id        = var.project_id
  replica_locations = [var.region]
  secrets = { for id, spec in var.secrets : id => {
    accessors = { for account in spec.accessors : account => module.iam.members[account] }
  } }
}

# Cloud Run pulls from its own project's repository with its service agent: no reader bindings.
module "artifact_registry" {
  source     = "./modules/artifact_registry"
  project_id = var.project_id
  region     = var.region
}

# The database is optional and off by default: no code uses it yet, and off, it costs nothing.
module "network" {
  source     = "./modules/network"
  count      = var.enable_database ? 1 : 0
  project_id = var.project_id
  region     = var.region
}

module "sql" {
  source                       = "./modules/sql"
  count                        = var.enable_database ? 1 : 0
  project_id                   = var.project_id
  region                       = var.region
  network_id                   = module.network[0].network_id
  private_services_connection  = module.network[0].private_services_connection
  client_service_account_email = module.iam.emails["vibesdk-control-plane"]
}

module "control_plane" {
  source                = "./modules/runtime"
  project_id            = var.project_id
  region                = var.region
  name                  = local.services.control_plane
  image                 = var.image
  entry_point           = local.definitions.entry_points[local.services.control_plane]
  service_account_email = module.iam.emails["vibesdk-control-plane"]
  ingress               = "INGRESS_TRAFFIC_ALL"
  # Callers authenticate with the API's own tokens (and Cloud Run IAM where it fronts the API).
  invokers    = var.public_api ? { public = "allUsers" } : var.api_invokers
  health_path = "/healthz"
  vpc_network = var.enable_database ? { network = module.network[0].network_id, subnetwork = module.network[0].subnetwork_id } : null
  # Each request holds at most one Firestore listener (a /runner call or ?wait= waiting, an events
  # stream): at most the process's listeners (vibesdk_gcp/runs/watches.py MAX_LISTENERS), so that
  # Cloud Run scales out before an instance refuses a wait (tests/test_infra.py).
  concurrency = local.control_plane_concurrency
  # /runner answers when its run ends (control_plane/runner.py run_budget): as long as the job's
  # request, which bounds every run, not Cloud Run's default 300 s, past which it answers 504
  # (https://cloud.google.com/run/docs/configuring/request-timeout; tests/test_runner.py).
  timeout_seconds = local.definitions.trigger.tuned_subscription.ack_deadline_seconds
  env = merge(local.common_env, {
    VIBESDK_PUBLIC_URL = local.control_plane_url
    # Either URL form of the service may be what a caller asked Google to sign a token for.
    VIBESDK_API_AUDIENCE   = local.control_plane_url
    VIBESDK_MAX_BODY_BYTES = tostring(var.max_body_bytes)
    VIBESDK_CORS_ORIGINS   = join(",", var.cors_origins)
    VIBESDK_ALLOWED_OWNERS = join(",", var.allowed_owners)
    # Who may frame previews by host besides the control plane's pages: VibSDK's origin.
    VIBESDK_PREVIEW_FRAME_ANCESTORS = join(" ", var.preview_frame_ancestors)
    # The job's bound on an action: the longest /runner waits for a run.
    VIBESDK_MAX_ACTION_SECONDS = tostring(local.definitions.trigger.tuned_subscription.ack_deadline_seconds - 60)
    # One VibSDK deployment calls with one key: its waits may fill the instance, never be refused first.
    VIBESDK_MAX_WAITS_PER_OWNER = tostring(local.control_plane_concurrency)
  })
}

# Previews by host, https://{label}.{preview_domain}/: a load balancer with a wildcard certificate
# in front of the control plane, only when a preview domain is set.
module "previews" {
  source     = "./modules/previews"
  count      = var.preview_domain == "" ? 0 : 1
  project_id = var.project_id
  region     = var.region
  domain     = var.preview_domain
  service    = module.control_plane.name
  public_api = var.public_api
}

module "sandbox_job" {
  source                = "./modules/runtime"
  project_id            = var.project_id
  region                = var.region
  name                  = local.services.sandbox_job
  image                 = var.image
  entry_point           = local.definitions.entry_points[local.services.sandbox_job]
  service_account_email = module.iam.emails["vibesdk-sandbox-job"]
  invokers              = { eventarc = module.iam.members["vibesdk-eventarc"] }
  # As long as the tuned subscription's ack deadline: a delivery is never cut by Cloud Run first.
  timeout_seconds = local.definitions.trigger.tuned_subscription.ack_deadline_seconds
  # Cloud Run's file system is the instance's memory: each action's workspace and /tmp and its
  # command's processes, and the working copies and dependency trees the instance keeps between
  # actions (copies, not links, under Cloud Run sandboxes) must fit beside the job
  # (tests/test_infra.py::test_job_instance_memory_holds_its_in_memory_disks).
  concurrency   = var.job_concurrency
  max_instances = var.job_max_instances
  cpu           = "2"
  memory      = "${var.job_memory_mib}Mi"
  # Cloud Run sandboxes, set by Terraform itself so no apply makes a revision without them. They
  # are Preview: the service declares BETA, and with the launcher on the API reads BETA back (the
  # provider's own sandbox example, resource_cloud_run_v2_service_generated_test.go at v7.45.0,
  # imports it with launch_stage verified), so the plan shows no diff.
  sandbox_launcher = true
  launch_stage     = "BETA"
  # Started only once its warm-up has ended: outside requests the instance has no CPU for one.
  startup_path = "/readyz"
  env = merge(local.common_env, {
    VIBESDK_PUBLIC_URL              = local.control_plane_url
    VIBESDK_SANDBOX_BACKEND         = "cloud-run"
    # An owner may hold half of all the instances' actions at once, counted over all of them in
    # Firestore (functions/fairness.py).
    VIBESDK_JOB_INSTANCES         = tostring(var.job_max_instances)
    # Fetched as an instance starts, so a session's first action there does not (functions/warmup.py).
    VIBESDK_WARM_TEMPLATES = join(",", var.job_warm_templates)
    VIBESDK_MAX_ACTIONS_PER_OWNER = tostring(max(1, floor(var.job_concurrency * var.job_max_instances / 2)))
    VIBESDK_WORKSPACE_ROOT          = "/tmp/workspaces"
    VIBESDK_WORKSPACE_BYTES         = tostring(var.workspace_mib * 1048576)
    VIBESDK_SANDBOX_TMP_BYTES       = tostring(var.sandbox_tmp_mib * 1048576)
    VIBESDK_COMMAND_MEMORY_BYTES    = tostring(var.command_memory_mib * 1048576)
    VIBESDK_MAX_LOCAL_WORKSPACES    = tostring(var.job_local_workspaces)
    VIBESDK_COMMAND_TIMEOUT_SECONDS = tostring(var.command_timeout_seconds)
    # A minute short of the request timeout: every command ends inside the request that runs it.
    VIBESDK_MAX_ACTION_SECONDS = tostring(local.definitions.trigger.tuned_subscription.ack_deadline_seconds - 60)
    VIBESDK_PUSH_SERVICE_ACCOUNT    = module.iam.emails["vibesdk-eventarc"]
    VIBESDK_PUSH_AUDIENCE           = local.service_url.sandbox_job
  })
}

module "status_recorder" {
  source                = "./modules/runtime"
  project_id            = var.project_id
  region                = var.region
  name                  = local.services.status_recorder
  image                 = var.image
  entry_point           = local.definitions.entry_points[local.services.status_recorder]
  service_account_email = module.iam.emails["vibesdk-status-recorder"]
  invokers              = { push = module.iam.members["vibesdk-push"] }
  timeout_seconds       = local.definitions.status_subscription.ack_deadline_seconds
  concurrency           = 40
  env = merge(local.common_env, {
    VIBESDK_PUSH_SERVICE_ACCOUNT = module.iam.emails["vibesdk-push"]
    VIBESDK_PUSH_AUDIENCE        = local.service_url.status_recorder
  })
}

module "sweeper" {
  source                = "./modules/runtime"
  project_id            = var.project_id
  region                = var.region
  name                  = local.services.sweeper
  image                 = var.image
  entry_point           = local.definitions.entry_points[local.services.sweeper]
  service_account_email = module.iam.emails["vibesdk-sweeper"]
  invokers              = { scheduler = module.iam.members["vibesdk-scheduler"] }
  max_instances         = 1
  env = merge(local.common_env, {
    VIBESDK_PUSH_SERVICE_ACCOUNT  = module.iam.emails["vibesdk-scheduler"]
    VIBESDK_PUSH_AUDIENCE         = local.service_url.sweeper
    VIBESDK_SWEEP_GRACE_SECONDS   = tostring(var.sweep_grace_seconds)
    VIBESDK_QUEUE_TIMEOUT_SECONDS = tostring(var.queue_timeout_seconds)
  })
}

# Every five minutes: runs whose job is gone for good end failed (docs/OPERATIONS.md).
resource "google_cloud_scheduler_job" "sweep" {
  project   = var.project_id
  region    = var.region
  name      = "vibesdk-sweep-stale-runs"
  schedule  = "*/5 * * * *"
  time_zone = "Etc/UTC"

  http_target {
    http_method = "POST"
    uri         = "${module.sweeper.uri}/"
    oidc_token {
      service_account_email = module.iam.emails["vibesdk-scheduler"]
      audience              = local.service_url.sweeper
    }
  }

  retry_config {
    retry_count = 1
  }
}

module "sandbox" {
  source                        = "./modules/sandbox"
  project_id                    = var.project_id
  region                        = var.region
  definitions                   = local.definitions
  sandbox_job_service           = module.sandbox_job.name
  status_recorder_uri           = module.status_recorder.uri
  status_recorder_audience      = local.service_url.status_recorder
  trigger_service_account_email = module.iam.emails["vibesdk-eventarc"]
  push_service_account_email    = module.iam.emails["vibesdk-push"]
  dead_letter_readers           = var.operators
}

module "monitoring" {
  source                   = "./modules/monitoring"
  project_id               = var.project_id
  trigger_subscription     = element(split("/", module.sandbox.trigger_subscription), 3)
  dead_letter_subscription = module.sandbox.dead_letter_subscription
  sandbox_job_service      = module.sandbox_job.name
  notification_channels    = var.notification_channels
  alert_emails             = var.alert_emails
}
