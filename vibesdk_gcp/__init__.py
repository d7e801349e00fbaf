"""What the control plane, the sandbox job and the status recorder share.

Settings, message and document schemas, the run state machine and the
Firestore, Pub/Sub and Cloud Storage adapters. Imports none of the deployables.
"""
