terraform {
  required_version = ">= 1.5, < 2.0"

  # State in a bucket of the project: terraform init -backend-config=bucket=<project>-tfstate
  backend "gcs" {
    prefix = "vibesdk"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.45"
    }
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
