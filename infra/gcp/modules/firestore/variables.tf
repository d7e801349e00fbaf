variable "project_id" {
  type        = string
  description = "Project that owns the database."
}

variable "location" {
  type        = string
  description = "Firestore location, for example eur3 or europe-west1."
}

variable "runs_collection" {
  type        = string
  description = "Collection of sessions, as the code names it."
}

variable "runs_subcollection" {
  type        = string
  description = "Subcollection of runs under each session (runs)."
}

variable "queued_requests_subcollection" {
  type        = string
  description = "Subcollection of queued runs' requests under each session (queuedRequests)."
}

variable "ttl_field" {
  type        = string
  description = "Timestamp field after which Firestore deletes a run."
  default     = "expireAt"
}

variable "delete_protection" {
  type        = bool
  description = "Refuse to delete the database."
  default     = true
}
