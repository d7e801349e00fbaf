variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of Cloud Run, Eventarc, Artifact Registry, Cloud SQL and the network."
  default     = "europe-west1"
}

variable "storage_location" {
  type        = string
  description = "Location of the buckets."
  default     = "EU"
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database."
  default     = "eur3"
}

variable "image" {
  type        = string
  description = "The runtime image by digest, as Cloud Build pushed it (repository/vibesdk@sha256:...)."
}

variable "bucket_prefix" {
  type        = string
  description = "Prefix that makes the bucket names globally unique, for example the project id and a dash."
}

variable "enable_database" {
  type        = bool
  description = "Provision the seed control plane's Cloud SQL database and its VPC (no code uses it yet; off costs nothing)."
  default     = false
}

variable "secrets" {
  type = map(object({
    accessors = list(string)
  }))
  description = "Secret Manager secrets for the units, by id, each with the account ids (module iam) that read it."
  default     = {}
}

variable "job_concurrency" {
  type        = number
  description = "Sandbox actions one job instance runs at once; each takes a workspace and a /tmp in memory."
  default     = 2
}

variable "job_max_instances" {
  type        = number
  description = "Sandbox job instances at most; an owner's share of actions is half of all their workers (functions/fairness.py)."
  default     = 20
}

variable "job_warm_templates" {
  type        = list(string)
  description = "Templates whose dependency trees a new job instance fetches as it starts; at most two are kept (functions/local_copies.py)."
  default     = ["react-vite", "static-site"]
}

variable "job_memory_mib" {
  type        = number
  description = "Memory of a sandbox job instance, MiB (holds its in-memory file system and its commands too; 2 CPUs allow up to 8 GiB)."
  default     = 8192
}

variable "command_memory_mib" {
  type        = number
  description = "Resident memory all of one command's processes may hold together, MiB."
  default     = 1536
}

variable "job_local_workspaces" {
  type        = number
  description = "Working copies a job instance keeps in its memory between actions (each with a copy of its dependency tree); more are restored from Cloud Storage."
  default     = 4
}

variable "workspace_mib" {
  type        = number
  description = "Disk quota of one action's workspace, MiB."
  default     = 1024
}

variable "sandbox_tmp_mib" {
  type        = number
  description = "Disk quota of one command's /tmp, MiB."
  default     = 256
}

variable "public_api" {
  type        = bool
  description = "Let anyone reach the API (it checks its own tokens); false leaves access to api_invokers via Cloud Run IAM."
  default     = true
}

variable "api_invokers" {
  type        = map(string)
  description = "IAM members allowed to call the API when public_api is false, by a name known at plan time."
  default     = {}
}

variable "max_body_bytes" {
  type        = number
  description = "Largest request body the API accepts."
  default     = 8388608
}

variable "command_timeout_seconds" {
  type        = number
  description = "Default timeout of one sandbox command."
  default     = 120
}

variable "operators" {
  type        = map(string)
  description = "IAM members allowed to list and replay dead letters, by a name known at plan time (alice => user:alice@example.com)."
  default     = {}
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids for the alerts (this or alert_emails must name one)."
  default     = []
}

variable "alert_emails" {
  type        = list(string)
  description = "Addresses the alerts are mailed to (an email channel is made for each)."
  default     = []

  validation {
    condition     = alltrue([for email in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+$", email))])
    error_message = "Each of alert_emails must be an email address."
  }
}

variable "force_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete non-empty buckets (test projects only)."
  default     = false
}

variable "cors_origins" {
  type        = list(string)
  description = "Browser origins allowed to call the API (none by default)."
  default     = []
}

variable "sweep_grace_seconds" {
  type        = number
  description = "How long after a run's lease lapsed the sweeper ends it (time for Pub/Sub to redeliver)."
  default     = 900
}

variable "queue_timeout_seconds" {
  type        = number
  description = "How long a run may stay queued, never claimed, before the sweeper ends it."
  default     = 3600
}

variable "preview_origin" {
  type        = string
  description = "Origin previews are served from, e.g. https://previews.example.com mapped to the control plane (recommended: user content on an origin of its own). Empty: the control plane's own."
  default     = ""
}

variable "preview_domain" {
  type        = string
  description = "Domain previews are served under by host, https://{label}.{preview_domain}/ (VibSDK's preview domain): a load balancer with a wildcard certificate is made for it. Use a registrable domain of its own (docs/SECURITY.md). Empty: previews by path only."
  default     = ""
}

variable "preview_frame_ancestors" {
  type        = list(string)
  description = "Origins that may frame previews served by host besides the control plane's own, e.g. VibSDK's (it frames its previews): https://build.example.com."
  default     = []
}

variable "allowed_owners" {
  type        = list(string)
  description = "Who may be an owner by a Google ID token: emails, or @domain for a domain. Empty: nobody (API keys you issue still work)."
  default     = []
}
