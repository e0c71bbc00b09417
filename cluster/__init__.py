"""What runs on the Ray nodes: the executor that runs one job and writes its outcome to Postgres."""
