# Previews by host, https://{label}.{domain}/, one origin per preview, served by the control plane
# (it dispatches by Host: control_plane/middleware.py). A wildcard domain needs a load balancer:
# a Cloud Run domain mapping maps one named domain to a service and manages its certificate
# itself, while a global external Application Load Balancer takes our own certificate and maps
# dynamic host names (https://cloud.google.com/run/docs/mapping-custom-domains). A wildcard
# Google-managed certificate needs DNS authorization; load balancer authorization does not
# support wildcards (https://cloud.google.com/certificate-manager/docs/domain-authorization).

resource "google_certificate_manager_dns_authorization" "previews" {
  project     = var.project_id
  name        = "${var.name}-dns-authorization"
  description = "Proves control of ${var.domain} for the previews' wildcard certificate."
  domain      = var.domain
}

resource "google_certificate_manager_certificate" "previews" {
  project     = var.project_id
  name        = "${var.name}-wildcard"
  description = "*.${var.domain}: every preview's host."

  managed {
    domains            = ["*.${var.domain}"]
    dns_authorizations = [google_certificate_manager_dns_authorization.previews.id]
  }
}

resource "google_certificate_manager_certificate_map" "previews" {
  project     = var.project_id
  name        = "${var.name}-certificates"
  description = "The previews' certificate, by host name."
}

resource "google_certificate_manager_certificate_map_entry" "previews" {
  project      = var.project_id
  name         = "${var.name}-wildcard"
  map          = google_certificate_manager_certificate_map.previews.name
  certificates = [google_certificate_manager_certificate.previews.id]
  hostname     = "*.${var.domain}"
}

resource "google_compute_global_address" "previews" {
  project = var.project_id
  name    = "${var.name}-address"
}

resource "google_compute_region_network_endpoint_group" "control_plane" {
  project               = var.project_id
  name                  = "${var.name}-control-plane"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = var.service
  }
}

resource "google_compute_backend_service" "control_plane" {
  project               = var.project_id
  name                  = "${var.name}-control-plane"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.control_plane.id
  }

  # A logged request names its host, and a preview's host carries its token (docs/SECURITY.md):
  # one request in ten is logged, enough to see errors and abuse, not a list of every preview.
  log_config {
    enable      = true
    sample_rate = 0.1
  }
}

# Only a preview's host, *.{domain}, reaches the control plane (which answers it with that preview
# alone); any other Host, the load balancer's bare IP among them, is answered 404 by the load
# balancer itself: the API, /runner and the dashboard are never reachable through it. Fault
# injection aborts every request before it is sent to the backend named beside it
# (fault injection: https://cloud.google.com/load-balancing/docs/https/setting-up-global-traffic-mgmt).
resource "google_compute_url_map" "previews" {
  project = var.project_id
  name    = "${var.name}-urls"

  default_route_action {
    weighted_backend_services {
      backend_service = google_compute_backend_service.control_plane.id
      weight          = 100
    }
    fault_injection_policy {
      abort {
        http_status = 404
        percentage  = 100
      }
    }
  }

  host_rule {
    hosts        = ["*.${var.domain}"]
    path_matcher = "previews"
  }

  path_matcher {
    name            = "previews"
    default_service = google_compute_backend_service.control_plane.id
  }
}

resource "google_compute_ssl_policy" "previews" {
  project         = var.project_id
  name            = "${var.name}-tls"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "previews" {
  project         = var.project_id
  name            = "${var.name}-https"
  url_map         = google_compute_url_map.previews.id
  certificate_map = "//certificatemanager.googleapis.com/${google_certificate_manager_certificate_map.previews.id}"
  ssl_policy      = google_compute_ssl_policy.previews.id
}

resource "google_compute_global_forwarding_rule" "previews" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "443"
  target                = google_compute_target_https_proxy.previews.id
  ip_address            = google_compute_global_address.previews.id
}

# http://{label}.{domain}/ is sent to https:// on the same address, rather than left unanswered
# (https://cloud.google.com/load-balancing/docs/https/setting-up-http-https-redirect).
resource "google_compute_url_map" "http_redirect" {
  project = var.project_id
  name    = "${var.name}-http"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "http_redirect" {
  project = var.project_id
  name    = "${var.name}-http"
  url_map = google_compute_url_map.http_redirect.id
}

resource "google_compute_global_forwarding_rule" "http_redirect" {
  project               = var.project_id
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_protocol           = "TCP"
  port_range            = "80"
  target                = google_compute_target_http_proxy.http_redirect.id
  ip_address            = google_compute_global_address.previews.id
}
