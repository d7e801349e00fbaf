output "emails" {
  value       = { for key, account in google_service_account.accounts : key => account.email }
  description = "Service account email by account id."
}

output "members" {
  value       = { for key, account in google_service_account.accounts : key => "serviceAccount:${account.email}" }
  description = "IAM member string by account id."
}
