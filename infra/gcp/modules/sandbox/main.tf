# Topics, the Eventarc trigger to the sandbox job, the push subscription to the status recorder,
# dead-lettering, and the IAM each of these needs.
locals {
  pubsub_agent = "serviceAccount:${google_project_service_identity.agents["pubsub"].email}"
  topic_names  = toset(values(var.definitions.topics))
  status       = var.definitions.status_subscription
  trigger      = var.definitions.trigger
}

# The Pub/Sub and Eventarc service agents exist only once something asks for them: made here, then
# given time to reach IAM, so the first apply of a fresh project does not race them.
resource "google_project_service_identity" "agents" {
  for_each = { pubsub = "pubsub.googleapis.com", eventarc = "eventarc.googleapis.com" }
  provider = google-beta

  project = var.project_id
  service = each.value
}

resource "time_sleep" "agents_propagate" {
  create_duration = "60s"
  triggers        = { for name, agent in google_project_service_identity.agents : name => agent.email }
}

resource "google_pubsub_topic" "topics" {
  for_each = local.topic_names

  project                    = var.project_id
  name                       = each.value
  message_retention_duration = "604800s"
  # checkov:skip=CKV_GCP_83: Google-managed encryption; a customer key is the operator's choice (see README)
}

resource "google_eventarc_trigger" "sandbox_job" {
  project         = var.project_id
  name            = local.trigger.name
  location        = var.region
  service_account = var.trigger_service_account_email

  matching_criteria {
    attribute = "type"
    value     = local.trigger.event_type
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.topics[local.trigger.managed_subscription.topic].id
    }
  }

  destination {
    cloud_run_service {
      service = var.sandbox_job_service
      region  = var.region
      path    = local.trigger.managed_subscription.path
    }
  }

  # The subscription Eventarc makes for this trigger takes no settings from here (provider issues
  # #17701, #10755): cloudbuild.yaml's `tune-trigger-subscription` step sets it after apply.
  depends_on = [time_sleep.agents_propagate]
}

resource "google_pubsub_subscription" "status_recorder" {
  project                    = var.project_id
  name                       = local.status.name
  topic                      = google_pubsub_topic.topics[local.status.topic].id
  ack_deadline_seconds       = local.status.ack_deadline_seconds
  enable_message_ordering    = local.status.message_ordering
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${var.status_recorder_uri}${local.status.path}"
    oidc_token {
      service_account_email = var.push_service_account_email
      audience              = var.status_recorder_audience
    }
  }

  retry_policy {
    minimum_backoff = "${local.status.minimum_backoff_seconds}s"
    maximum_backoff = "${local.status.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.topics[local.status.dead_letter_topic].id
    max_delivery_attempts = local.status.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [time_sleep.agents_propagate]
}

# Dead letters wait here to be listed and replayed; a topic without a subscription drops them.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project                    = var.project_id
  name                       = var.definitions.dead_letter_subscription
  topic                      = google_pubsub_topic.topics[var.definitions.topics.dead_letter].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering: the Pub/Sub service agent publishes to the dead-letter topic and
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topics[var.definitions.topics.dead_letter].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source" {
  for_each = {
    status  = google_pubsub_subscription.status_recorder.name
    trigger = google_eventarc_trigger.sandbox_job.transport[0].pubsub[0].subscription
  }

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Operators list and replay dead letters (keyed by the operator's name, known at plan time).
resource "google_pubsub_subscription_iam_member" "dead_letter_readers" {
  for_each = var.dead_letter_readers

  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter_hold.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# The service agent signs the push requests' OIDC tokens as the push service account.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.push_service_account_email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
