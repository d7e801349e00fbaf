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
  description = "The subnet Cloud Run instances take addresses from (Direct VPC egress; a /26 or larger)."
  default     = "10.8.0.0/26"
}
