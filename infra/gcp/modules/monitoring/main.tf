# Alerts on what loses or stalls runs, and one dashboard.
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

  notification_channels = var.notification_channels
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

  notification_channels = var.notification_channels
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
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_RATE"
      }
    }
  }

  notification_channels = var.notification_channels
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

  notification_channels = var.notification_channels
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
