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

variable "db_password" {
  type        = string
  description = "Password of the control plane's database user."
  sensitive   = true
}

variable "public_api" {
  type        = bool
  description = "Let anyone reach the API (it checks its own tokens); false leaves access to api_invokers via Cloud Run IAM."
  default     = true
}

variable "api_invokers" {
  type        = list(string)
  description = "IAM members allowed to call the API when public_api is false."
  default     = []
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
  type        = list(string)
  description = "IAM members allowed to list and replay dead letters."
  default     = []
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids for the alerts."
  default     = []
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
