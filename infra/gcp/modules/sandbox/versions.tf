terraform {
  required_version = ">= 1.5, < 2.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.45"
    }
    # google_project_service_identity is in google-beta only (still so in 7.45).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.45"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.11, < 1.0"
    }
  }
}
