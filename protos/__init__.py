"""The wire contract: jobs.proto and the modules generated from it (protos/generated)."""
