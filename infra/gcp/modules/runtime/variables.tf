variable "project_id" {
  type        = string
  description = "Project of the service."
}

variable "region" {
  type        = string
  description = "Region of the service."
}

variable "name" {
  type        = string
  description = "Service name, as the code and the Eventarc definitions name it."
}

variable "image" {
  type        = string
  description = "Image by digest (repository@sha256:...)."
}

variable "entry_point" {
  type        = list(string)
  description = "Command and arguments that start this unit from the shared image."
}

variable "service_account_email" {
  type        = string
  description = "Identity the service runs as."
}

variable "env" {
  type        = map(string)
  description = "Plain environment variables."
  default     = {}
}

variable "secret_env" {
  type        = map(string)
  description = "Environment variables from Secret Manager: name => secret id."
  default     = {}
}

variable "ingress" {
  type        = string
  description = "INGRESS_TRAFFIC_ALL for the public API, INGRESS_TRAFFIC_INTERNAL_ONLY for push targets."
  default     = "INGRESS_TRAFFIC_INTERNAL_ONLY"
}

variable "invokers" {
  type        = map(string)
  description = "IAM members granted roles/run.invoker (allUsers only for the public API), keyed by a name known at plan time."
  default     = {}
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout; for push targets at least the subscription's ack deadline."
  default     = 300
}

variable "concurrency" {
  type        = number
  description = "Requests one instance serves at once."
  default     = 8
}

variable "min_instances" {
  type        = number
  description = "Instances kept warm."
  default     = 0
}

variable "max_instances" {
  type        = number
  description = "Upper bound of instances."
  default     = 20
}

variable "cpu" {
  type        = string
  description = "CPU limit per instance."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory limit per instance."
  default     = "1Gi"
}

variable "vpc_network" {
  type = object({
    network    = string
    subnetwork = string
  })
  description = "VPC network and subnet for Direct VPC egress, or null for none."
  default     = null
}

variable "startup_path" {
  type        = string
  description = "HTTP path the startup probe asks until it answers 200, or null for a TCP probe of the port."
  default     = null
}

variable "health_path" {
  type        = string
  description = "HTTP path of the liveness probe, or null to rely on the startup probe alone."
  default     = null
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the service."
  default     = true
}

variable "sandbox_launcher" {
  type        = bool
  description = "Let the container launch Cloud Run sandboxes (a Preview feature: launch_stage BETA)."
  default     = false
}

variable "launch_stage" {
  type        = string
  description = "GA, or BETA for a service that uses a Preview feature (the sandbox job: Cloud Run sandboxes)."
  default     = "GA"
}
