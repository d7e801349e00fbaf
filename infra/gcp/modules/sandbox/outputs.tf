output "topic_ids" {
  value       = { for name, topic in google_pubsub_topic.topics : name => topic.id }
  description = "Topic id by name."
}

output "topic_names" {
  value       = { for name, topic in google_pubsub_topic.topics : name => topic.name }
  description = "Topic short name by name (what topic IAM bindings take)."
}

output "trigger_subscription" {
  value       = google_eventarc_trigger.sandbox_job.transport[0].pubsub[0].subscription
  description = "The subscription Eventarc created for the trigger."
}

output "status_subscription" {
  value       = google_pubsub_subscription.status_recorder.id
  description = "Push subscription of the status recorder."
}

output "dead_letter_subscription" {
  value       = google_pubsub_subscription.dead_letter_hold.name
  description = "Where dead letters wait for replay."
}
