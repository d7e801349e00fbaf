# One service account per unit, holding project roles only where no narrower scope exists;
# resource-level bindings live with the resources (sandbox, storage, secrets modules).
resource "google_service_account" "accounts" {
  for_each = var.accounts

  project      = var.project_id
  account_id   = each.key
  display_name = each.value.display_name
  description  = each.value.description
}

resource "google_project_iam_member" "project_roles" {
  for_each = { for pair in flatten([
    for account, spec in var.accounts : [for role in spec.project_roles : { key = "${account}/${role}", account = account, role = role }]
  ]) : pair.key => pair }

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.accounts[each.value.account].email}"
}
