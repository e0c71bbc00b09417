"""Every SQL statement of QServer, one module per aggregate: keyword-only functions over psycopg 3
connections.

- connect: the async pool and sync connections;
- jobs: submission, claiming, parking, start (claimed to running) and hand-back, heartbeat, cancel,
  delete, retention;
- outcomes: a finished, failed or batch outcome written, and recovery of orphaned jobs;
- reads: jobs and results for the api;
- listing: pages of jobs and history (filters, keyset paging both ways, lean rows);
- cluster: nodes and what the cluster offers;
- plugins: plugins and backends;
- keys: API keys;
- cache: a job answered from an earlier one's results;
- sweeps: a sweep's bindings and its results per chunk;
- idempotency: a job stored once per idempotency key;
- metrics: what the api's /metrics reads at scrape time.

Status changes are single guarded UPDATEs (``... WHERE status = 'pending'``), so a duplicated or
redelivered queue message can never run a job twice to completion, and a terminal status is
never left. ``claimed`` (taken by the dispatcher, not started) is internal: reads show it as
``pending``. History rows are written by the database itself (migration 0002) when a job reaches
a terminal status. Async functions serve ingest, dispatcher and api; the ``*_sync`` ones serve
executors and the CLI. Rows come back as dicts (``dict_row``). Callers use ``store.NAME``: this
module names every public function of the aggregates.
"""

from __future__ import annotations

from core.store.cache import cached_source, finish_from_cache
from core.store.cluster import (
    cancel_drain,
    cluster_capabilities,
    forget_node_sync,
    head_node_versions_sync,
    jobs_running_by_node,
    known_nodes,
    list_nodes,
    list_nodes_sync,
    node_by_key_sync,
    nodes_matching_sync,
    request_drain_sync,
    running_jobs_on_node_sync,
    running_on_nodes,
    save_nodes,
)
from core.store.connect import (
    CANCEL_CHANNEL,
    DELETED,
    JOB_STATUS_CHANNEL,
    PAGE_SIZE,
    PLUGINS_CHANNEL,
    SUBMIT_CHANNEL,
    JobChange,
    connect_sync,
    listen,
    open_pool,
)
from core.store.idempotency import insert_job_once
from core.store.jobs import (
    ClaimedJob,
    Move,
    cancel_job,
    canceled_among,
    claim_jobs,
    claimed_among,
    delete_expired_jobs,
    delete_expired_jobs_sync,
    delete_job,
    delete_pending_job,
    hand_back_sync,
    heartbeat_sync,
    insert_job,
    mark_started_sync,
    park_job,
    parked_jobs,
    requeue_job,
    rerun_job,
    running_jobs,
    set_job_memory,
    stale_pending_jobs,
    stale_running_jobs,
    status_in,
)
from core.store.keys import get_api_key, insert_api_key_sync, list_api_keys_sync, revoke_api_key_sync, touch_api_key
from core.store.listing import (
    HISTORY_FIELDS,
    JOB_FIELDS,
    MAX_LIMIT,
    Listing,
    list_history_page,
    list_jobs_page,
    parse_statuses,
    pick_fields,
)
from core.store.metrics import metrics_snapshot
from core.store.outcomes import (
    fail_job,
    fail_job_sync,
    finish_job_sync,
    record_outcomes_sync,
    recover_orphans,
    running_job_ids,
)
from core.store.plugins import (
    admit_plugin,
    backend_needs_gpu,
    describe_backend,
    enable_builtin_plugin,
    get_backend,
    get_plugin,
    list_backends,
    list_plugins,
    remove_plugin,
    require_backend,
    third_party_plugins,
)
from core.store.reads import (
    RESULT_TYPES,
    get_job_raw,
    get_job_status,
    get_results,
    job_states,
    raw_results,
)
from core.store.sweeps import clear_items_sync, job_bindings_sync, read_items_raw, save_items_sync

__all__ = [
    "CANCEL_CHANNEL",
    "ClaimedJob",
    "DELETED",
    "HISTORY_FIELDS",
    "JOB_FIELDS",
    "JOB_STATUS_CHANNEL",
    "JobChange",
    "Listing",
    "MAX_LIMIT",
    "Move",
    "PAGE_SIZE",
    "PLUGINS_CHANNEL",
    "SUBMIT_CHANNEL",
    "RESULT_TYPES",
    "admit_plugin",
    "cached_source",
    "backend_needs_gpu",
    "cancel_drain",
    "cancel_job",
    "canceled_among",
    "claimed_among",
    "claim_jobs",
    "clear_items_sync",
    "cluster_capabilities",
    "connect_sync",
    "delete_expired_jobs",
    "delete_expired_jobs_sync",
    "delete_job",
    "delete_pending_job",
    "describe_backend",
    "enable_builtin_plugin",
    "fail_job",
    "fail_job_sync",
    "finish_from_cache",
    "finish_job_sync",
    "forget_node_sync",
    "get_api_key",
    "get_backend",
    "get_job_raw",
    "get_job_status",
    "get_plugin",
    "get_results",
    "hand_back_sync",
    "head_node_versions_sync",
    "heartbeat_sync",
    "insert_api_key_sync",
    "insert_job",
    "insert_job_once",
    "job_bindings_sync",
    "job_states",
    "jobs_running_by_node",
    "known_nodes",
    "list_api_keys_sync",
    "list_backends",
    "list_history_page",
    "list_jobs_page",
    "list_nodes",
    "list_plugins",
    "list_nodes_sync",
    "listen",
    "mark_started_sync",
    "metrics_snapshot",
    "node_by_key_sync",
    "nodes_matching_sync",
    "open_pool",
    "park_job",
    "parse_statuses",
    "parked_jobs",
    "pick_fields",
    "raw_results",
    "read_items_raw",
    "record_outcomes_sync",
    "recover_orphans",
    "remove_plugin",
    "request_drain_sync",
    "requeue_job",
    "rerun_job",
    "require_backend",
    "revoke_api_key_sync",
    "running_job_ids",
    "running_jobs",
    "running_jobs_on_node_sync",
    "running_on_nodes",
    "save_items_sync",
    "save_nodes",
    "set_job_memory",
    "stale_pending_jobs",
    "stale_running_jobs",
    "status_in",
    "third_party_plugins",
    "touch_api_key",
]
