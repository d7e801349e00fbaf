variable "project_id" {
  type        = string
  description = "Project that owns the buckets."
}

variable "location" {
  type        = string
  description = "Bucket location, for example EU or europe-west1."
}

variable "name_prefix" {
  type        = string
  description = "Prefix for bucket names (bucket names are global); empty to use the names the code defines."
  default     = ""
}

variable "buckets" {
  type = map(object({
    delete_after_days = optional(number)
    noncurrent_days   = optional(number, 7)
    prefix_days       = optional(map(number), {})
  }))
  description = "Buckets by the name the code uses, with their lifecycle: objects deleted after delete_after_days (null keeps them), objects under each prefix of prefix_days after its days, old versions after noncurrent_days."
}

variable "force_destroy" {
  type        = bool
  description = "Allow terraform destroy to delete non-empty buckets."
  default     = false
}
