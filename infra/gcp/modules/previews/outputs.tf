output "ip_address" {
  value       = google_compute_global_address.previews.address
  description = "The load balancer's address: *.{domain} must resolve to it."
}

output "dns_records" {
  value = concat(
    [for record in google_certificate_manager_dns_authorization.previews.dns_resource_record : {
      name = record.name, type = record.type, data = record.data
    }],
    [{ name = "*.${var.domain}.", type = "A", data = google_compute_global_address.previews.address }],
  )
  description = "DNS records the operator must create: the authorization's CNAME (for the certificate) and the wildcard A record."
}
