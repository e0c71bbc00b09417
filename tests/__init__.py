"""Test suite: real Postgres, RabbitMQ, Ray and nginx."""
