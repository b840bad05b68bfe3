"""notifsvc: an at-least-once notification pipeline on Kafka and CockroachDB."""

__version__ = "0.1.0"
