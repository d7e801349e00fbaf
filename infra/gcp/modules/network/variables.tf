variable "project_id" {
  type        = string
  description = "Project of the network."
}

variable "region" {
  type        = string
  description = "Region of the subnet and the connector."
}

variable "network_name" {
  type        = string
  description = "VPC name."
  default     = "vibesdk"
}

variable "subnet_cidr" {
  type        = string
  description = "A /28 for the serverless VPC access connector."
  default     = "10.8.0.0/28"
}

variable "connector_name" {
  type        = string
  description = "Serverless VPC access connector name (at most 25 characters)."
  default     = "vibesdk-connector"
}

variable "connector_max_instances" {
  type        = number
  description = "Upper bound of connector instances."
  default     = 3
}
