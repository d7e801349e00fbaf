variable "project_id" {
  type        = string
  description = "Project of the repository."
}

variable "region" {
  type        = string
  description = "Repository region."
}

variable "repository_id" {
  type        = string
  description = "Repository id."
  default     = "vibesdk"
}

variable "keep_versions" {
  type        = number
  description = "How many recent image versions the cleanup policy keeps."
  default     = 20
}

variable "delete_after_days" {
  type        = number
  description = "Image versions older than this, beyond the most recent keep_versions, are deleted."
  default     = 30
}

variable "readers" {
  type        = map(string)
  description = "IAM members that pull images from another project, keyed by a name known at plan time. Cloud Run pulls from its own project without one."
  default     = {}
}
