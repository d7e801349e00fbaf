# One Cloud Run service of the runtime: the shared image with this unit's entry point.
resource "google_cloud_run_v2_service" "service" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  launch_stage        = var.launch_stage

  template {
    service_account                  = var.service_account_email
    timeout                          = "${var.timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    # Direct VPC egress: no connector instances to pay for while idle.
    dynamic "vpc_access" {
      for_each = var.vpc_network == null ? [] : [var.vpc_network]
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = vpc_access.value.network
          subnetwork = vpc_access.value.subnetwork
        }
      }
    }

    containers {
      image   = var.image
      command = slice(var.entry_point, 0, 1)
      args    = slice(var.entry_point, 1, length(var.entry_point))
      # The container itself launches the sandboxes (`sandbox do`): the container field of provider
      # 7.43.0+ (magic-modules #18396), not template.sandboxes (#18486), which names templates of
      # other images for the `sandbox` CLI. false sends nothing: the API's default, no launcher.
      sandbox_launcher = var.sandbox_launcher

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle = true
      }

      dynamic "env" {
        for_each = var.env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      # Until it passes the instance gets no request and keeps its CPU (a warm-up runs then).
      startup_probe {
        period_seconds    = var.startup_path == null ? null : 2
        failure_threshold = var.startup_path == null ? null : 100
        dynamic "tcp_socket" {
          for_each = var.startup_path == null ? [8080] : []
          content {
            port = tcp_socket.value
          }
        }
        dynamic "http_get" {
          for_each = var.startup_path == null ? [] : [var.startup_path]
          content {
            path = http_get.value
          }
        }
      }

      dynamic "liveness_probe" {
        for_each = var.health_path == null ? [] : [var.health_path]
        content {
          http_get {
            path = liveness_probe.value
          }
        }
      }
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = var.invokers

  project  = var.project_id
  location = google_cloud_run_v2_service.service.location
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = each.value
}
