# The VibSDK runtime on Google Cloud: every module composed, names from definitions.json.
provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  definitions = jsondecode(file("${path.module}/definitions.json"))
  services    = local.definitions.services
  buckets     = local.definitions.buckets

  # Environment each service reads (definitions.json's service_env lists the names; a test holds them).
  common_env = {
    GOOGLE_CLOUD_PROJECT  = var.project_id
    VIBESDK_BUCKET_PREFIX = var.bucket_prefix
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
      project_roles = ["roles/datastore.user", "roles/cloudsql.client", "roles/logging.logWriter"]
    }
    "vibesdk-sandbox-job" = {
      display_name  = "VibSDK sandbox job"
      description   = "Runs sandbox actions, publishes status."
      project_roles = ["roles/datastore.viewer", "roles/logging.logWriter"]
    }
    "vibesdk-status-recorder" = {
      display_name  = "VibSDK status recorder"
      description   = "Records status transitions in Firestore."
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
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
      project_roles = ["roles/datastore.user", "roles/logging.logWriter"]
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
    (local.buckets.workspaces) = { noncurrent_days = 3 }
    (local.buckets.logs)       = { delete_after_days = 30 }
    (local.buckets.previews)   = { delete_after_days = 30 }
  }
}

# Least privilege on the buckets: read templates, write only what each unit writes.
resource "google_storage_bucket_iam_member" "access" {
  for_each = {
    job_templates    = { bucket = local.buckets.templates, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-sandbox-job"] }
    job_workspaces   = { bucket = local.buckets.workspaces, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    job_logs         = { bucket = local.buckets.logs, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    job_previews     = { bucket = local.buckets.previews, role = "roles/storage.objectUser", member = module.iam.members["vibesdk-sandbox-job"] }
    control_previews = { bucket = local.buckets.previews, role = "roles/storage.objectViewer", member = module.iam.members["vibesdk-control-plane"] }
  }

  bucket = module.storage.bucket_names[each.value.bucket]
  role   = each.value.role
  member = each.value.member
}

module "firestore" {
  source             = "./modules/firestore"
  project_id         = var.project_id
  location           = var.firestore_location
  runs_collection    = local.definitions.collection
  runs_subcollection = local.definitions.subcollection
}

module "secrets" {
  source            = "./modules/secrets"
  project_id        = var.project_id
  replica_locations = [var.region]
  secrets = {
    "vibesdk-db-password" = { accessors = [module.iam.members["vibesdk-control-plane"]] }
  }
}

module "artifact_registry" {
  source     = "./modules/artifact_registry"
  project_id = var.project_id
  region     = var.region
  readers    = [for account in ["vibesdk-control-plane", "vibesdk-sandbox-job", "vibesdk-status-recorder"] : module.iam.members[account]]
}

module "network" {
  source     = "./modules/network"
  project_id = var.project_id
  region     = var.region
}

module "sql" {
  source                      = "./modules/sql"
  project_id                  = var.project_id
  region                      = var.region
  network_id                  = module.network.network_id
  private_services_connection = module.network.private_services_connection
  user_password               = var.db_password
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
  invokers         = var.public_api ? ["allUsers"] : var.api_invokers
  health_path      = "/healthz"
  vpc_connector_id = module.network.connector_id
  concurrency      = 80
  env = merge(local.common_env, {
    VIBESDK_PUBLIC_URL     = local.control_plane_url
    VIBESDK_API_AUDIENCE   = local.control_plane_url
    VIBESDK_MAX_BODY_BYTES = tostring(var.max_body_bytes)
    VIBESDK_CORS_ORIGINS   = join(",", var.cors_origins)
  })
}

module "sandbox_job" {
  source                = "./modules/runtime"
  project_id            = var.project_id
  region                = var.region
  name                  = local.services.sandbox_job
  image                 = var.image
  entry_point           = local.definitions.entry_points[local.services.sandbox_job]
  service_account_email = module.iam.emails["vibesdk-sandbox-job"]
  invokers              = [module.iam.members["vibesdk-eventarc"]]
  timeout_seconds       = local.definitions.trigger.subscription.ack_deadline_seconds
  concurrency           = 4
  cpu                   = "2"
  memory                = "4Gi"
  env = merge(local.common_env, {
    VIBESDK_PUBLIC_URL              = local.control_plane_url
    VIBESDK_WORKSPACE_ROOT          = "/tmp/workspaces"
    VIBESDK_COMMAND_TIMEOUT_SECONDS = tostring(var.command_timeout_seconds)
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
  invokers              = [module.iam.members["vibesdk-push"]]
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
  invokers              = [module.iam.members["vibesdk-scheduler"]]
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
  control_plane_member          = module.iam.members["vibesdk-control-plane"]
  sandbox_job_member            = module.iam.members["vibesdk-sandbox-job"]
  dead_letter_readers           = var.operators
}

module "monitoring" {
  source                   = "./modules/monitoring"
  project_id               = var.project_id
  trigger_subscription     = element(split("/", module.sandbox.trigger_subscription), 3)
  dead_letter_subscription = module.sandbox.dead_letter_subscription
  sandbox_job_service      = module.sandbox_job.name
  notification_channels    = var.notification_channels
}
