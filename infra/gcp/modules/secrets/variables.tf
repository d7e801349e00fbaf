variable "project_id" {
  type        = string
  description = "Project of the secrets."
}

variable "secrets" {
  type = map(object({
    accessors = map(string)
  }))
  description = "Secrets by id, each with the IAM members allowed to read it, keyed by a name known at plan time (account id => member)."
  default     = {}
}

variable "replica_locations" {
  type        = list(string)
  description = "Regions that hold a replica of each secret."
}

variable "labels" {
  type        = map(string)
  description = "Labels on every secret."
  default     = {}
}
