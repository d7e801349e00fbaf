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

variable "readers" {
  type        = list(string)
  description = "IAM members that pull images."
  default     = []
}
