# Native-mode database, the indexes the code's queries need (tests/test_indexes.py), and a TTL on old runs.
resource "google_firestore_database" "database" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
}

# An owner's queued and running runs: what the per-owner limit counts.
resource "google_firestore_index" "runs_by_owner_and_status" {
  project     = var.project_id
  database    = google_firestore_database.database.name
  collection  = var.runs_subcollection
  query_scope = "COLLECTION_GROUP"

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
}

# Sessions by owner, newest first: what a session listing reads.
resource "google_firestore_index" "sessions_by_owner" {
  project    = var.project_id
  database   = google_firestore_database.database.name
  collection = var.runs_collection

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updatedAt"
    order      = "DESCENDING"
  }
}

# Queued and running runs across sessions (the sweep): a collection-group query on one field needs
# a collection-group single-field index, which Firestore does not make by itself.
resource "google_firestore_field" "runs_status" {
  project    = var.project_id
  database   = google_firestore_database.database.name
  collection = var.runs_subcollection
  field      = "status"

  index_config {
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION"
    }
    indexes {
      order       = "ASCENDING"
      query_scope = "COLLECTION_GROUP"
    }
  }
}

resource "google_firestore_field" "runs_ttl" {
  project    = var.project_id
  database   = google_firestore_database.database.name
  collection = var.runs_subcollection
  field      = var.ttl_field

  ttl_config {}

  # A TTL field needs no index of its own.
  index_config {}
}

# Each queued run's request, kept beside it for any job instance to start it, expires with it.
resource "google_firestore_field" "queued_requests_ttl" {
  project    = var.project_id
  database   = google_firestore_database.database.name
  collection = var.queued_requests_subcollection
  field      = var.ttl_field

  ttl_config {}

  index_config {}
}
