"""Database access: migrations and the notification store."""
