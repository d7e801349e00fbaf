output "name" {
  value       = google_cloud_run_v2_service.service.name
  description = "Service name."
}

output "uri" {
  value       = google_cloud_run_v2_service.service.uri
  description = "HTTPS address of the service."
}
