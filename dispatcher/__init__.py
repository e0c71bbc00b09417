"""Dispatcher: consumes job ids from RabbitMQ, claims each job in Postgres and runs it on Ray."""
