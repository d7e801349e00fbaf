variable "project_id" {
  type        = string
  description = "Project of the instance."
}

variable "region" {
  type        = string
  description = "Instance region."
}

variable "instance_name" {
  type        = string
  description = "Cloud SQL instance name."
  default     = "vibesdk"
}

variable "tier" {
  type        = string
  description = "Machine tier."
  default     = "db-custom-1-3840"
}

variable "availability_type" {
  type        = string
  description = "ZONAL or REGIONAL."
  default     = "REGIONAL"
}

variable "network_id" {
  type        = string
  description = "VPC the instance gets its private address in."
}

variable "private_services_connection" {
  type        = string
  description = "Id of the private services connection, so the instance waits for it."
}

variable "database_name" {
  type        = string
  description = "Database of the control plane."
  default     = "vibesdk"
}

variable "user_name" {
  type        = string
  description = "Database user of the control plane."
  default     = "vibesdk"
}

variable "user_password" {
  type        = string
  description = "Password of that user (keep the same value in the Secret Manager secret the control plane reads)."
  sensitive   = true
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance."
  default     = true
}
