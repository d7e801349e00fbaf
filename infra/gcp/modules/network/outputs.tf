output "network_id" {
  value       = google_compute_network.vpc.id
  description = "VPC id."
}

output "subnetwork_id" {
  value       = google_compute_subnetwork.serverless.id
  description = "Subnet for Cloud Run's Direct VPC egress."
}

output "private_services_connection" {
  value       = google_service_networking_connection.private_services.id
  description = "The private services connection Cloud SQL depends on."
}
