output "network_id" {
  value       = google_compute_network.vpc.id
  description = "VPC id."
}

output "connector_id" {
  value       = google_vpc_access_connector.connector.id
  description = "Serverless VPC access connector id, for Cloud Run's vpc_access."
}

output "private_services_connection" {
  value       = google_service_networking_connection.private_services.id
  description = "The private services connection Cloud SQL depends on."
}
