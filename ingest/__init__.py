"""gRPC ingest: checks a submission, stores it in Postgres and queues its id on RabbitMQ."""
