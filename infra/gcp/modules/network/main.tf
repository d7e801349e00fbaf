# The VPC the control plane reaches Cloud SQL through, by Direct VPC egress (no connector to pay for).
resource "google_compute_network" "vpc" {
  project                 = var.project_id
  name                    = var.network_name
  auto_create_subnetworks = false
  # checkov:skip=CKV2_GCP_18: the implied deny-all ingress rule is the firewall; an explicit copy would need compute.securityAdmin for the deploy account
}

# No firewall rule of ours: a VPC's implied rules already deny every ingress, and creating one
# would need compute.securityAdmin for the deploy account.

resource "google_compute_subnetwork" "serverless" {
  project                  = var.project_id
  name                     = "${var.network_name}-serverless"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: Cloud SQL gets an address inside the VPC, none on the internet.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.network_name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.vpc.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}
