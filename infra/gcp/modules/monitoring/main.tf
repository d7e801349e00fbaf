# Alerts on what loses or stalls runs or refuses callers, mailed or sent to the given channels, and
# one dashboard.
locals {
  channels = concat(var.notification_channels, [for channel in google_monitoring_notification_channel.email : channel.id])
}

# Every alert goes to these; an apply that would give them nowhere to go fails here, once.
resource "terraform_data" "alert_channels" {
  input = local.channels

  lifecycle {
    precondition {
      condition     = length(local.channels) > 0
      error_message = "Alerts need somewhere to go: set alert_emails or notification_channels."
    }
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  project      = var.project_id
  display_name = "VibSDK alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

# A log-based metric is not visible to alerting at once: an alert made in the same apply waits.
resource "time_sleep" "stale_runs_metric" {
  create_duration = "60s"
  triggers        = { metric = google_logging_metric.stale_runs.id }
}
resource "google_logging_metric" "stale_runs" {
  project = var.project_id
  name    = "vibesdk/stale_runs"
  filter  = "resource.type=\"cloud_run_revision\" AND jsonPayload.message=~\"lease expired\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  project      = var.project_id
  display_name = "VibSDK: dead letters waiting"
  combiner     = "OR"

  conditions {
    display_name = "undelivered dead letters > 0"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.dead_letter_subscription}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = terraform_data.alert_channels.output
}

resource "google_monitoring_alert_policy" "oldest_unacked" {
  project      = var.project_id
  display_name = "VibSDK: sandbox requests waiting too long"
  combiner     = "OR"

  conditions {
    display_name = "oldest unacknowledged request older than ${var.oldest_unacked_seconds} s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.trigger_subscription}\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_unacked_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = terraform_data.alert_channels.output
}

resource "google_monitoring_alert_policy" "job_errors" {
  project      = var.project_id
  display_name = "VibSDK: sandbox job errors"
  combiner     = "OR"

  conditions {
    display_name = "5xx answers of the sandbox job"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${var.sandbox_job_service}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.job_errors_per_minute
      duration        = "300s"
      # ALIGN_DELTA over 60 s: answers per minute, as the threshold is (ALIGN_RATE is per second).
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_DELTA"
      }
    }
  }

  notification_channels = terraform_data.alert_channels.output
}

resource "google_monitoring_alert_policy" "stale_runs" {
  project      = var.project_id
  display_name = "VibSDK: runs stuck past their lease"
  combiner     = "OR"

  conditions {
    display_name = "runs ended by the sweeper"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.stale_runs.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  depends_on = [time_sleep.stale_runs_metric]

  notification_channels = terraform_data.alert_channels.output
}

# 401 and 403 answers of any unit: a caller or a push identity being refused, over and over.
resource "google_monitoring_alert_policy" "refused_callers" {
  project      = var.project_id
  display_name = "VibSDK: callers refused (401/403)"
  combiner     = "OR"

  conditions {
    display_name = "401 and 403 answers per minute"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = starts_with(\"vibesdk-\") AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code = one_of(\"401\", \"403\")"
      comparison      = "COMPARISON_GT"
      threshold_value = var.refusals_per_minute
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.labels.service_name"]
      }
    }
  }

  notification_channels = terraform_data.alert_channels.output
}

resource "google_monitoring_dashboard" "runtime" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "VibSDK runtime"
    gridLayout = {
      columns = 2
      widgets = [
        for widget in [
          ["Requests waiting (oldest, s)", "pubsub.googleapis.com/subscription/oldest_unacked_message_age", "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.trigger_subscription}\""],
          ["Dead letters waiting", "pubsub.googleapis.com/subscription/num_undelivered_messages", "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${var.dead_letter_subscription}\""],
          ["Sandbox job requests", "run.googleapis.com/request_count", "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${var.sandbox_job_service}\""],
          ["Stale runs", "logging.googleapis.com/user/${google_logging_metric.stale_runs.name}", "resource.type = \"cloud_run_revision\""],
          ] : {
          title = widget[0]
          xyChart = {
            dataSets = [{
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter      = "metric.type = \"${widget[1]}\" AND ${widget[2]}"
                  aggregation = { alignmentPeriod = "60s", perSeriesAligner = "ALIGN_MEAN" }
                }
              }
            }]
          }
        }
      ]
    }
  })
}
