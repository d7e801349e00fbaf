output "bucket_names" {
  value       = { for key, bucket in google_storage_bucket.buckets : key => bucket.name }
  description = "Actual bucket name by the name the code uses."
}

output "access_logs_bucket" {
  value       = google_storage_bucket.access_logs.name
  description = "Bucket receiving the access logs of the others."
}
