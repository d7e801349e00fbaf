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

variable "edition" {
  type        = string
  description = "ENTERPRISE (takes db-custom-* tiers) or ENTERPRISE_PLUS (db-perf-optimized-* tiers)."
  default     = "ENTERPRISE"
}

variable "tier" {
  type        = string
  description = "Machine tier."
  default     = "db-custom-1-3840"
}

variable "availability_type" {
  type        = string
  description = "ZONAL, or REGIONAL for high availability (about twice the cost)."
  default     = "ZONAL"
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

variable "client_service_account_email" {
  type        = string
  description = "Service account that signs in to the database with IAM authentication (the control plane)."
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance."
  default     = true
}
