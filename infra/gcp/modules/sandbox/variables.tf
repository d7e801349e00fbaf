variable "project_id" {
  type        = string
  description = "Project of the topics, trigger and subscriptions."
}

variable "region" {
  type        = string
  description = "Region of the trigger (the sandbox job's region)."
}

variable "definitions" {
  type = object({
    topics                   = object({ requests = string, status = string, dead_letter = string })
    dead_letter_subscription = string
    trigger = object({
      name                 = string
      event_type           = string
      managed_subscription = object({ topic = string, path = string })
    })
    status_subscription = object({
      name                    = string
      topic                   = string
      path                    = string
      ack_deadline_seconds    = number
      minimum_backoff_seconds = number
      maximum_backoff_seconds = number
      max_delivery_attempts   = number
      dead_letter_topic       = string
      message_ordering        = bool
    })
  })
  description = "The Eventarc definitions (infra/gcp/definitions.json, made from eventarc/definitions.py)."
}

variable "sandbox_job_service" {
  type        = string
  description = "Name of the sandbox job's Cloud Run service."
}

variable "status_recorder_uri" {
  type        = string
  description = "HTTPS address of the status recorder's Cloud Run service."
}

variable "status_recorder_audience" {
  type        = string
  description = "Audience of the OIDC token on status pushes; the recorder checks it."
}

variable "trigger_service_account_email" {
  type        = string
  description = "Identity Eventarc invokes the sandbox job with."
}

variable "push_service_account_email" {
  type        = string
  description = "Identity in the OIDC token of the status pushes."
}

variable "dead_letter_readers" {
  type        = map(string)
  description = "IAM members allowed to list dead letters, by a name of your choosing (operator => member)."
  default     = {}
}
