output "connection_name" {
  value       = google_sql_database_instance.postgres.connection_name
  description = "project:region:instance, for the Cloud SQL connector."
}

output "private_ip" {
  value       = google_sql_database_instance.postgres.private_ip_address
  description = "Private address of the instance."
}

output "database" {
  value       = google_sql_database.vibesdk.name
  description = "Database name."
}
