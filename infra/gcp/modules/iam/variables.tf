variable "project_id" {
  type        = string
  description = "Project of the service accounts."
}

variable "accounts" {
  type = map(object({
    display_name  = string
    description   = string
    project_roles = optional(list(string), [])
  }))
  description = "Service accounts by account id, with the project-level roles each needs (never owner or editor)."

  validation {
    condition = alltrue([
      for spec in values(var.accounts) : alltrue([
        for role in spec.project_roles : !contains(["roles/owner", "roles/editor"], role)
      ])
    ])
    error_message = "No service account may hold roles/owner or roles/editor."
  }
}
