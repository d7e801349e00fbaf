output "alert_policy_ids" {
  value = [
    google_monitoring_alert_policy.dead_letter_backlog.id,
    google_monitoring_alert_policy.oldest_unacked.id,
    google_monitoring_alert_policy.job_errors.id,
    google_monitoring_alert_policy.stale_runs.id,
  ]
  description = "Alert policy ids."
}

output "dashboard_id" {
  value       = google_monitoring_dashboard.runtime.id
  description = "Dashboard id."
}
