output "control_plane_url" {
  value       = module.control_plane.uri
  description = "Address of the HTTP API."
}

output "artifact_repository" {
  value       = module.artifact_registry.repository_url
  description = "Where Cloud Build pushes the image."
}

output "buckets" {
  value       = module.storage.bucket_names
  description = "Bucket names by the names the code uses."
}

output "dead_letter_subscription" {
  value       = module.sandbox.dead_letter_subscription
  description = "Subscription holding dead letters for replay."
}

output "sql_connection_name" {
  value       = var.enable_database ? module.sql[0].connection_name : null
  description = "Cloud SQL connection name of the seed control plane's database (null when off)."
}

output "trigger_subscription" {
  value       = module.sandbox.trigger_subscription
  description = "The subscription Eventarc made for the trigger: the pipeline tunes it after apply."
}

output "preview_dns_records" {
  value       = var.preview_domain == "" ? [] : module.previews[0].dns_records
  description = "DNS records to create for previews by host: the certificate's authorization CNAME and the wildcard A record (empty without preview_domain)."
}
