terraform {
  required_version = ">= 1.5, < 2.0"

  # State in a bucket of the project: terraform init -backend-config=bucket=<project>-tfstate
  backend "gcs" {
    prefix = "vibesdk"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.10, < 7.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.10, < 7.0"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.11, < 1.0"
    }
  }
}
