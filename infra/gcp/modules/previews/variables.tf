variable "project_id" {
  type        = string
  description = "Project to create the load balancer and certificate in."
}

variable "region" {
  type        = string
  description = "Region of the control plane's Cloud Run service."
}

variable "name" {
  type        = string
  description = "Prefix of every resource's name."
  default     = "vibesdk-preview-hosts"
}

variable "domain" {
  type        = string
  description = "The preview domain (VIBESDK_PREVIEW_DOMAIN): previews are served at https://{label}.{domain}/."

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain))
    error_message = "domain must be a lower-case DNS name such as previews.example.com (no scheme, port or path)."
  }
}

variable "service" {
  type        = string
  description = "Name of the control plane's Cloud Run service, which serves the previews."
}

variable "public_api" {
  type        = bool
  description = "The root module's public_api: it must be true, the load balancer calls the control plane without an identity."

  validation {
    condition     = var.public_api
    error_message = "preview_domain needs public_api = true: the previews' load balancer calls the control plane without an identity, so Cloud Run IAM would refuse every preview (docs/SECURITY.md, \"Previews by host\")."
  }
}
