variable "project_id" {
  type        = string
  description = "Project of the alert policies and dashboard."
}

variable "trigger_subscription" {
  type        = string
  description = "Subscription id of the Eventarc trigger (its oldest message is watched)."
}

variable "dead_letter_subscription" {
  type        = string
  description = "Subscription id that holds dead letters."
}

variable "sandbox_job_service" {
  type        = string
  description = "Cloud Run service name of the sandbox job."
}

variable "oldest_unacked_seconds" {
  type        = number
  description = "Age of the oldest unacknowledged request that raises an alert."
  default     = 900
}

variable "job_errors_per_minute" {
  type        = number
  description = "Rate of 5xx answers of the sandbox job that raises an alert."
  default     = 1
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids the alerts go to."
  default     = []
}

variable "alert_emails" {
  type        = list(string)
  description = "Addresses the alerts are mailed to."
  default     = []
}

variable "refusals_per_minute" {
  type        = number
  description = "401/403 answers per minute, per service, that raise the refused-callers alert."
  default     = 30
}
