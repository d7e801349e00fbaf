# The runtime's buckets: uniform access, no public access, versioned, logged, aged out.
resource "google_storage_bucket" "access_logs" {
  project                     = var.project_id
  name                        = "${var.name_prefix}vibesdk-access-logs"
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
  # checkov:skip=CKV_GCP_62: this is the bucket the others log to; logging it to itself would loop
}

# Cloud Storage delivers the usage and storage logs as this group: without object creation on the
# log bucket, none arrive (https://cloud.google.com/storage/docs/access-logs, "Set IAM permissions").
resource "google_storage_bucket_iam_member" "access_logs_delivery" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_storage_bucket" "buckets" {
  for_each = var.buckets

  project                     = var.project_id
  name                        = "${var.name_prefix}${each.key}"
  location                    = var.location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy

  versioning {
    enabled = true
  }

  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }

  dynamic "lifecycle_rule" {
    for_each = each.value.delete_after_days == null ? [] : [each.value.delete_after_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  # Rebuildable objects under a prefix (the dependency cache, deps/) age out on their own.
  dynamic "lifecycle_rule" {
    for_each = each.value.prefix_days
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [lifecycle_rule.key]
      }
      action {
        type = "Delete"
      }
    }
  }

  # Old versions are kept for recovery, not for ever.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = each.value.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}
