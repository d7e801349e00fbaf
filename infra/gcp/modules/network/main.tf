# The VPC the control plane reaches Cloud SQL through, and its serverless connector.
resource "google_compute_network" "vpc" {
  project                 = var.project_id
  name                    = var.network_name
  auto_create_subnetworks = false
}

# Nothing reaches the VPC from outside: only the connector and Cloud SQL live in it.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.network_name}-deny-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

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

resource "google_vpc_access_connector" "connector" {
  project = var.project_id
  name    = var.connector_name
  region  = var.region

  subnet {
    name = google_compute_subnetwork.serverless.name
  }

  min_instances = 2
  max_instances = var.connector_max_instances
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
