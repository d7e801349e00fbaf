# Secret Manager secrets (values are added out of band) and who may read each.
resource "google_secret_manager_secret" "secrets" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = each.key
  labels    = var.labels

  replication {
    user_managed {
      dynamic "replicas" {
        for_each = var.replica_locations
        content {
          location = replicas.value
        }
      }
    }
  }
  # checkov:skip=CKV_GCP_128: Google-managed encryption; a customer key is the operator's choice (see README)
}

resource "google_secret_manager_secret_iam_member" "accessors" {
  for_each = { for pair in flatten([
    for secret, spec in var.secrets : [for name, member in spec.accessors : { key = "${secret}/${name}", secret = secret, member = member }]
  ]) : pair.key => pair }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secrets[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
