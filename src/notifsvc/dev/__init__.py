"""Local, real infrastructure (Tansu broker, embedded PostgreSQL) and ``notifsvc dev``."""
