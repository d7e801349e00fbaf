output "database" {
  value       = google_firestore_database.database.name
  description = "Database name."
}
