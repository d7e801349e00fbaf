"""The sandbox job and the status recorder: functions-framework entry points."""
