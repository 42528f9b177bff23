import { Ajv } from 'ajv';
import { ConfigError } from '../errors.ts';
import { parseOrgOverrides, parseTierOverrides } from '../limits/tiers.ts';

/**
 * Every setting of the hub, in one place. Each entry is an environment variable with its
 * JSON-Schema type, default and documentation; `docs/configuration.md` is generated from this
 * table (`npm run docs:config`), so the two cannot drift.
 */
export const settings = {
  ORGHUB_ENV: { type: 'string', enum: ['development', 'production'], default: 'development', description: 'Deployment kind. `production` refuses development conveniences at start: an empty ORGHUB_CLUSTER_SECRET (see docs/access.md).' },
  ORGHUB_PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 8080, description: 'HTTP + WebSocket port (0 picks a free port).' },
  ORGHUB_HOST: { type: 'string', default: '0.0.0.0', description: 'Address the HTTP/WebSocket listener binds to.' },
  ORGHUB_NODE_ID: { type: 'string', default: '', description: 'Name of this hub node in logs and event metadata; empty means hostname:pid.' },
  ORGHUB_MQTT_PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 1883, description: 'MQTT TCP port; 0 turns the bridge off. If left at the default and busy, the hub runs without MQTT.' },
  NATS_URL: { type: 'string', default: 'nats://127.0.0.1:4222', description: 'NATS server(s), comma-separated.' },
  ORGHUB_EVENT_STORE: { type: 'string', enum: ['postgres', 'eventstoredb', 'none'], default: 'postgres', description: 'The event store: `postgres` (default), `eventstoredb` (needs EVENTSTORE_URL) or `none` (commands disabled, audit only logged; for transport-only deployments and tests).' },
  EVENTSTORE_URL: { type: 'string', default: '', description: 'EventStoreDB connection string, for ORGHUB_EVENT_STORE=eventstoredb (e.g. `esdb://127.0.0.1:2113?tls=false`).' },
  DATABASE_URL: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/orghub', description: 'Postgres for the event store and read models (an owner role that runs migrations).' },
  ORGHUB_DATABASE_APP_ROLE: { type: 'string', pattern: '^[a-z_][a-z0-9_]*$', default: 'orghub_app', description: 'Non-superuser role, without BYPASSRLS, that queries run as (SET ROLE).' },
  ORGHUB_DATABASE_QUERY_ROLE: { type: 'string', pattern: '^[a-z_][a-z0-9_]*$', default: 'orghub_query', description: 'Role the query API reads the read models as (SET LOCAL ROLE): not superuser, no BYPASSRLS, owns nothing, SELECT on the read models only. `npm run migrate` creates it.' },
  ORGHUB_QUERY_POOL_SIZE: { type: 'integer', minimum: 1, maximum: 100, default: 8, description: 'Connections of the query API\'s own Postgres pool (separate from the event store\'s append pool).' },
  ORGHUB_QUERY_MAX_PER_ORG: { type: 'integer', minimum: 1, maximum: 1000, default: 4, description: 'Query-API requests (a CSV export counts for its whole duration) one org may have in flight on one hub node; more answer 429 `limit`, so one org cannot take the whole query pool.' },
  ORGHUB_QUERY_STATEMENT_TIMEOUT_MS: { type: 'integer', minimum: 100, maximum: 600000, default: 5000, description: 'statement_timeout of each query-API statement; a query past it answers 503 `unavailable`. A CSV export runs one statement per page, so it is bounded per page, not in total.' },
  ORGHUB_QUERY_EXPORT_PAGE: { type: 'integer', minimum: 100, maximum: 10000, default: 1000, description: 'Rows per page of a streamed CSV export (each page one short transaction); bounds the export\'s memory.' },
  ORGHUB_QUERY_CURSOR_KEY: { type: 'string', default: '', description: 'HMAC key that makes page cursors tamper-evident; all nodes must share it. Empty uses a built-in key, which is enough: cursors carry no secret and isolation rests on RLS (docs/query-api.md).' },
  REDIS_URL: { type: 'string', default: 'redis://127.0.0.1:6379', description: 'Redis for retained MQTT messages, persistent MQTT sessions, presence and rate-limit buckets.' },
  ORGHUB_JWT_ISSUER: { type: 'string', minLength: 1, default: 'orghub-dev', description: 'Required `iss` of every token.' },
  ORGHUB_JWT_AUDIENCE: { type: 'string', minLength: 1, default: 'orghub', description: 'Required `aud` of every token.' },
  ORGHUB_JWT_JWKS: { type: 'string', default: '', description: 'JWKS file path or http(s) URL with the ES256/EdDSA/RS256 verification keys.' },
  ORGHUB_JWT_HS256_SECRET: { type: 'string', default: '', description: 'Development only: enables HS256 with this secret (at least 32 bytes).' },
  ORGHUB_JWT_ALLOW_HS256_WITH_JWKS: { type: 'string', enum: ['true', 'false'], default: 'false', description: 'Accept HS256 (ORGHUB_JWT_HS256_SECRET) next to a JWKS. Refused at start unless `true`: a shared secret beside asymmetric keys is usually a leftover from development.' },
  ORGHUB_JWT_TYP: { type: 'string', default: '', description: 'When set, the token header `typ` must equal it (case-insensitive, an `application/` prefix ignored; e.g. `at+jwt`, RFC 9068). Empty: not checked.' },
  ORGHUB_JWT_CLOCK_TOLERANCE: { type: 'integer', minimum: 0, maximum: 300, default: 0, description: 'Seconds of clock skew tolerated for `exp`/`nbf`.' },
  ORGHUB_JWT_MAX_LENGTH: { type: 'integer', minimum: 256, maximum: 65536, default: 8192, description: 'Longest token accepted, in bytes.' },
  ORGHUB_JWT_MAX_TTL: { type: 'integer', minimum: 60, maximum: 31536000, default: 86400, description: 'Longest token lifetime accepted, in seconds (`exp - iat`, or `exp - now` without `iat`). Revocations are kept this long and then forgotten, since no token they could match is valid any more.' },
  ORGHUB_CLUSTER_SECRET: { type: 'string', default: '', description: 'Shared by all hub nodes: authenticates control messages on `orghub.ctl.*` (HMAC-SHA-256), so a NATS client cannot forge a revocation or a takeover. At least 32 bytes; required when ORGHUB_ENV=production (development uses a fixed, public value).' },
  ORGHUB_APIKEY_PEPPER: { type: 'string', default: '', description: 'Server-side secret of the keyed hash (HMAC-SHA-256) that API keys are stored as; at least 32 bytes, the same on every node; changing it invalidates every key. Required when ORGHUB_ENV=production (development uses a fixed, public value).' },
  ORGHUB_APIKEYS_MAX: { type: 'integer', minimum: 1, maximum: 100000, default: 100, description: 'API keys per org (revoked ones count for 7 days); past it POST /v1/apikeys answers 429 `limit`.' },
  ORGHUB_ORG_PROVISIONING: { type: 'string', enum: ['auto', 'explicit'], default: 'auto', description: '`explicit`: a token (or API key) of an org that was not created with POST /v1/orgs is refused (`org_unknown`); the production choice. `auto`: any org a valid token names is served (the development default).' },
  ORGHUB_REVOCATIONS_MAX: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000, description: 'Revocations in force per org (each is forgotten after ORGHUB_JWT_MAX_TTL); past it POST /v1/revocations answers 429 `limit`.' },
  ORGHUB_JWT_CACHE_SIZE: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000, description: 'Verified tokens remembered (by exact token string, until exp, re-verified after 60 s); saves the signature check for repeated HTTP requests and reconnects.' },
  ORGHUB_ORG_CLAIM: { type: 'string', minLength: 1, default: 'org', description: 'Claim that carries the org id.' },
  ORGHUB_ROLE_GRANTS: { type: 'string', default: '', description: 'JSON object replacing the role defaults: `{"role":{"pub":[..],"sub":[..],"cmd":[..]}}`.' },
  ORGHUB_MAX_FRAME_BYTES: { type: 'integer', minimum: 1024, maximum: 16777216, default: 65536, description: 'Largest inbound WebSocket frame; a larger one closes with 1009, one above 4x this (at most 16 MiB) is cut without a close frame (1006).' },
  ORGHUB_MAX_SUBSCRIPTIONS: { type: 'integer', minimum: 1, maximum: 100000, default: 256, description: 'Subscriptions per connection.' },
  ORGHUB_IDLE_TIMEOUT: { type: 'integer', minimum: 8, maximum: 960, default: 120, description: 'Seconds without any inbound frame (data, ping or pong) before the connection is closed with 4002; the hub pings a connection silent for half of it, so a client that answers pings stays open.' },
  ORGHUB_MAX_BACKPRESSURE: { type: 'integer', minimum: 65536, maximum: 268435456, default: 4194304, description: 'Bytes buffered for one connection. Past half of it the connection is cut as a slow consumer (nothing more is delivered; close 4001 once it has read its buffer); sends above the whole of it are skipped.' },
  ORGHUB_WS_TURN_BUDGET_MS: { type: 'number', minimum: 0, maximum: 100, default: 1, description: 'Fair turns between orgs on the WebSocket path: the inline time (ms) one org\'s frames may take per event-loop turn; past it they wait in their connection\'s queue and run in round-robin slices across orgs between turns (docs/operations.md "Limits"). 0 runs every frame inline.' },
  ORGHUB_WS_TURN_SLICE_MS: { type: 'number', minimum: 0.1, maximum: 100, default: 1.5, description: 'Time (ms) one round-robin slice of waiting WebSocket frames may take before the event loop serves I/O again.' },
  ORGHUB_WS_QUEUE_BYTES: { type: 'integer', minimum: 65536, maximum: 268435456, default: 1048576, description: 'Bytes of frames one WebSocket connection may have waiting for their turn; past it the connection is not read (TCP pushes back) until they are under half.' },
  ORGHUB_DRAIN_TIMEOUT_MS: { type: 'integer', minimum: 1000, maximum: 600000, default: 15000, description: 'On SIGTERM/SIGINT: the most milliseconds the drain (stop accepting, wait for commands in flight, close clients with 4000/0x8B, flush appends and audit) may take before the process exits anyway (with status 1).' },
  ORGHUB_HTTP_MAX_BODY: { type: 'integer', minimum: 1024, maximum: 16777216, default: 262144, description: 'Largest HTTP request body; larger gets 413.' },
  ORGHUB_HTTP_MAX_BATCH: { type: 'integer', minimum: 1, maximum: 10000, default: 1000, description: 'Most messages in one POST /v1/publish/batch.' },
  ORGHUB_GROUP_COMMIT_MS: { type: 'number', minimum: 0, maximum: 100, default: 2, description: 'Window in which event-store appends share one transaction.' },
  ORGHUB_GROUP_COMMIT_MAX: { type: 'integer', minimum: 1, maximum: 10000, default: 500, description: 'Most appends in one group-commit transaction.' },
  ORGHUB_GROUP_COMMIT_QUEUE: { type: 'integer', minimum: 1, maximum: 10000000, default: 20000, description: 'Appends (commands, audit batches) waiting for a group-commit transaction, all orgs together; past it an append fails with `overloaded` (retry after `retryAfterMs`).' },
  ORGHUB_GROUP_COMMIT_QUEUE_PER_ORG: { type: 'integer', minimum: 1, maximum: 10000000, default: 5000, description: 'Appends one org may have waiting; past it that org\'s appends fail with `overloaded` while other orgs are served (the queue is round-robin across orgs).' },
  ORGHUB_GROUP_COMMIT_SLOTS_PER_ORG: { type: 'integer', minimum: 0, maximum: 64, default: 0, description: 'Most of the 4 in-flight group-commit transactions one org may hold at once, so a flooding org leaves slots for the others; 0 means 3 (all but one).' },
  ORGHUB_GROUP_COMMIT_ACK_SLICE: { type: 'integer', minimum: 0, maximum: 10000, default: 32, description: 'Callers of a flushed group-commit transaction answered per event-loop turn, the orgs with the fewest appends in it first; the rest in the next turns, so a flooding org\'s big batch (its acks and publishes) does not hold the event loop while another org\'s frames and results wait. 0 answers the whole batch at once.' },
  ORGHUB_GROUP_COMMIT_ORG_WINDOW: { type: 'integer', minimum: 0, maximum: 100000, default: 64, description: 'Appends one org may have in flight (in group-commit transactions) per unit of its tier\'s commit weight (free 1, standard 2, enterprise 4: 128 for a `standard` org by default) while another org has appended within ORGHUB_GROUP_COMMIT_ACTIVE_MS; its other appends wait in its queue. Bounds how many of a flooding org\'s commands one event-loop turn records and answers, so another org\'s frames and results do not wait behind them; costs the flooding org throughput (docs/benchmarks.md "Tenant fairness"). 0: no window.' },
  ORGHUB_GROUP_COMMIT_ACTIVE_MS: { type: 'integer', minimum: 0, maximum: 600000, default: 1000, description: 'How recently another org must have appended for ORGHUB_GROUP_COMMIT_ORG_WINDOW to hold an org back; an org alone on the node is never held.' },
  ORGHUB_AUDIT_BUFFER: { type: 'integer', minimum: 100, maximum: 10000000, default: 100000, description: 'Audit events held in memory while the event store is unreachable; beyond this they are counted and dropped (per org in `orghub_audit_dropped_by_org_total`).' },
  ORGHUB_AUDIT_AGGREGATE_MS: { type: 'integer', minimum: 50, maximum: 3600000, default: 10000, description: 'Window of the audit aggregation: within it, repeats of a denial or limit hit (same org, type, topic) are counted and recorded once at its end as one event with `aggregated: true` and `count`, so a flood cannot become an audit flood.' },
  ORGHUB_AUDIT_ORG_BUFFER: { type: 'integer', minimum: 0, maximum: 10000000, default: 0, description: 'Audit events one org (or `_unauthenticated`) may hold in that buffer, so no single source can fill it; 0 means a quarter of ORGHUB_AUDIT_BUFFER. When the whole buffer is full, the org holding the most loses its newest event.' },
  ORGHUB_READY_CACHE_MS: { type: 'integer', minimum: 0, maximum: 60000, default: 1000, description: '`/ready` answers from a result at most this old; concurrent requests share one check (0 checks every time, still one at a time). The event store is checked on its own one-connection pool.' },
  ORGHUB_OPS_PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 0, description: 'Port of the ops listener: when set, `/health`, `/ready` and `/metrics` are served there by a thread of their own (a flood of them never runs on the loop that serves tenants), and ORGHUB_PORT answers `/ready` and `/metrics` with 404 `not_found` (it keeps `/health`). 0 (the default): no ops listener, all three on ORGHUB_PORT (docs/operations.md "Ops port").' },
  ORGHUB_OPS_HOST: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Address the ops listener binds to. Loopback by default, so tenants cannot reach it; set `0.0.0.0` where probes or scrapers come from outside the host (Kubernetes: the kubelet probes the pod IP), and keep the port out of any public Service.' },
  ORGHUB_OPS_NICE: { type: 'integer', minimum: 0, maximum: 19, default: 19, description: 'With ORGHUB_OPS_PORT: niceness of the ops thread (Linux; 0 = the process\'s), so that on a busy machine it yields the CPU to the thread that serves tenants; a cached `/ready` answer costs microseconds, so probes still answer at 19.' },
  ORGHUB_OPS_METRICS_CACHE_MS: { type: 'integer', minimum: 100, maximum: 60000, default: 1000, description: 'With ORGHUB_OPS_PORT: `/metrics` answers from a text rendered at most this long ago, so a flood of scrapes costs the main thread at most one render per interval.' },
  ORGHUB_METRICS_ORGS: { type: 'string', pattern: '^[^\\s]*$', default: '', description: 'Comma-separated org ids that get their own `org` label on per-org metrics (publish-to-deliver latency); every other org is counted under `_other`, so the series stay bounded.' },
  ORGHUB_LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', description: 'pino log level.' },
  ORGHUB_MQTT_MAX_PACKET: { type: 'integer', minimum: 1024, maximum: 268435455, default: 262144, description: 'Largest MQTT packet accepted (and advertised in MQTT 5 CONNACK); larger disconnects (MQTT 5 reason 0x95).' },
  ORGHUB_MQTT_MAX_INFLIGHT: { type: 'integer', minimum: 1, maximum: 65535, default: 100, description: 'Unacknowledged outbound QoS 1 messages per MQTT connection (lowered to the client\'s receive maximum); later ones queue.' },
  ORGHUB_MQTT_MAX_RETAINED: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000, description: 'Retained topics per org (shared by all nodes, in Redis). A retained PUBLISH on a new topic past it is refused (MQTT 5 PUBACK 0x97) and audited as limit.hit; replacing or deleting is always allowed.' },
  ORGHUB_MQTT_SESSION_EXPIRY: { type: 'integer', minimum: 1, maximum: 31536000, default: 7200, description: 'Seconds an MQTT 3.1.1 persistent session (clean session 0) is kept after its connection ends (capped by ORGHUB_MQTT_MAX_SESSION_EXPIRY).' },
  ORGHUB_MQTT_MAX_SESSION_EXPIRY: { type: 'integer', minimum: 1, maximum: 31536000, default: 86400, description: 'Cap in seconds on an MQTT 5 client\'s Session Expiry Interval (CONNACK returns the capped value).' },
  ORGHUB_MQTT_QUEUE_MAX: { type: 'integer', minimum: 1, maximum: 1000000, default: 1000, description: 'QoS 1/2 messages queued per offline persistent MQTT session (Redis); past it the oldest is dropped and counted (orghub_mqtt_queue_dropped_total{reason="overflow"}).' },
  ORGHUB_MQTT_MAX_SESSIONS: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000, description: 'Persistent MQTT sessions per org (Redis); a CONNECT that would create one more is refused (MQTT 5 0x97, 3.1.1 return code 3).' },
  ORGHUB_MQTT_RATE: { type: 'integer', minimum: 0, maximum: 10000000, default: 1000, description: 'Inbound PUBLISH packets per second per MQTT connection (token bucket, burst = 2 s worth); 0 disables. Over it disconnects (MQTT 5 reason 0x96).' },
  ORGHUB_FLEET_EXPIRY_SECONDS: { type: 'integer', minimum: 1, maximum: 604800, default: 86400, description: 'Default lifetime of a fleet command (`expiresIn` when the request gives none); past it an unacked command becomes `expired`.' },
  ORGHUB_FLEET_MAX_EXPIRY_SECONDS: { type: 'integer', minimum: 1, maximum: 604800, default: 604800, description: 'Longest `expiresIn` a fleet command may ask for.' },
  ORGHUB_FLEET_RETRY_MS: { type: 'integer', minimum: 50, maximum: 86400000, default: 30000, description: 'A fleet command delivered to an online device and not acked is sent again after this many ms, until it is acked, cancelled or expired.' },
  ORGHUB_FLEET_MAX_PENDING: { type: 'integer', minimum: 1, maximum: 10000, default: 100, description: 'Open (queued or delivered) fleet commands per device; one more is refused with `limit` (429).' },
  ORGHUB_FLEET_MAX_OPEN: { type: 'integer', minimum: 1, maximum: 10000000, default: 100000, description: 'Open (queued or delivered, not expired) fleet commands per org across the cluster; a command or bulk command that would pass it is refused whole with `limit` (429). Kept in Redis; while Redis is down the bound is not enforced (fail open).' },
  ORGHUB_FLEET_REDIS_PREFIX: { type: 'string', minLength: 1, default: 'orghub:fleet:', description: 'Redis key prefix of fleet data: the per-org open-command sets (ORGHUB_FLEET_MAX_OPEN) and the cluster-wide expiry schedule.' },
  ORGHUB_FLEET_MAX_BULK: { type: 'integer', minimum: 1, maximum: 100000, default: 1000, description: 'Devices one bulk fleet command (`POST /v1/fleet/commands`) may target.' },
  ORGHUB_PRESENCE: { type: 'string', enum: ['on', 'off'], default: 'on', description: 'Presence in Redis (`off`: no presence entries, events or /v1/presence).' },
  ORGHUB_PRESENCE_ORG_EVENTS: { type: 'string', enum: ['on', 'off'], default: 'off', description: 'Also publish org-wide join/leave events on `$presence/@org` (one bus message per connect and disconnect); per-topic events are always published.' },
  ORGHUB_PRESENCE_NAMESPACES: { type: 'string', default: '', description: 'Comma-separated first topic segments whose concrete topics have per-topic presence (e.g. `rooms,chat`); org-wide presence is always kept.' },
  ORGHUB_PRESENCE_MAX_PER_TOPIC: { type: 'integer', minimum: 1, maximum: 1000000, default: 1000, description: 'Connections listed per presence scope (a topic, or the org); past it they are only counted.' },
  ORGHUB_PRESENCE_TTL_MS: { type: 'integer', minimum: 1000, maximum: 600000, default: 10000, description: 'A node whose heartbeat is older than this is dead: any other node removes its presence entries (worst case TTL + one heartbeat).' },
  ORGHUB_PRESENCE_HEARTBEAT_MS: { type: 'integer', minimum: 100, maximum: 60000, default: 2000, description: 'How often each node refreshes its heartbeat and reaps dead nodes.' },
  ORGHUB_PRESENCE_PREFIX: { type: 'string', minLength: 1, default: 'orghub:presence:', description: 'Redis key prefix of presence data.' },
  ORGHUB_HISTORY_NAMESPACES: { type: 'string', default: '', description: 'Namespaces (first topic segments) whose concrete topics keep history, as `ns=size:ttlSeconds` entries, e.g. `chat=100:300,feed=1000:3600`: the last `size` messages, kept `ttlSeconds` after the last publish. Their messages carry `offset` and `epoch`, and `sub` may resume with `since`.' },
  ORGHUB_HISTORY_MAX_RECOVER: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000, description: 'Most messages one resume (`sub` with `since`) recovers; a client further behind gets `recovered: false`.' },
  ORGHUB_HISTORY_MAX_TOPICS: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000, description: 'Distinct history topics (streams) one org may keep at once; a publish or subscribe that would start one more is refused with `limit`. A topic counts until its stream expires.' },
  ORGHUB_HISTORY_PREFIX: { type: 'string', minLength: 1, default: 'orghub:history:', description: 'Redis key prefix of history streams.' },
  ORGHUB_PROJECTION_LAG_THRESHOLD_S: { type: 'number', minimum: 0, maximum: 86400, default: 5, description: 'Hub `/ready`: a projection whose oldest unprojected event is older than this many seconds is reported `lagging` (still 200).' },
  ORGHUB_PROJECTION_STATUS_CACHE_MS: { type: 'integer', minimum: 0, maximum: 60000, default: 2000, description: 'Hub: how long the projection lag read for `/ready` and `/metrics` is reused (one small query per period).' },
  ORGHUB_PROJECTOR_PROJECTIONS: { type: 'string', default: 'all', description: 'Projector: which projections this process runs (`all` or a comma-separated list of orgs, audit_log, sessions, device_commands).' },
  ORGHUB_PROJECTOR_BATCH: { type: 'integer', minimum: 1, maximum: 100000, default: 2000, description: 'Projector: most events read and applied in one transaction.' },
  ORGHUB_PROJECTOR_POLL_MS: { type: 'integer', minimum: 1, maximum: 60000, default: 100, description: 'Projector: sleep between reads once caught up (bounds the steady-state lag).' },
  ORGHUB_PROJECTOR_LOCK_POLL_MS: { type: 'integer', minimum: 50, maximum: 60000, default: 1000, description: 'Projector: how often a standby tries the advisory lock of a projection (takeover time after the active process dies).' },
  ORGHUB_PROJECTOR_RETENTION_INTERVAL_S: { type: 'integer', minimum: 0, maximum: 86400, default: 3600, description: 'Projector: seconds between audit-log retention sweeps (drop or trim rows older than each org\'s audit_retention_days); 0 turns retention off.' },
  ORGHUB_PROJECTOR_RETENTION_BATCH: { type: 'integer', minimum: 1, maximum: 100000, default: 5000, description: 'Projector: rows deleted per retention transaction when trimming inside a partition (short transactions, no long locks).' },
  ORGHUB_LIMITS: { type: 'string', enum: ['on', 'off'], default: 'on', description: 'Rate limits, connection caps and per-tier quotas (docs/operations.md "Limits"); `off` skips every check (benchmarks, trusted single-tenant installs).' },
  ORGHUB_LIMITS_TIER: { type: 'string', enum: ['free', 'standard', 'enterprise'], default: 'standard', description: 'Tier of an org that ORGHUB_LIMITS_ORGS does not name; the defaults of each tier are in docs/operations.md.' },
  ORGHUB_LIMITS_TIERS: { type: 'string', default: '', description: 'JSON object changing tier defaults, e.g. `{"free":{"publish":{"org":100}}}` (fields as in docs/operations.md "Limits"; validated at start).' },
  ORGHUB_LIMITS_ORGS: { type: 'string', default: '', description: 'JSON object of per-org tiers and overrides, e.g. `{"acme":{"tier":"enterprise","connections":{"org":50000}}}` (validated at start).' },
  ORGHUB_LIMITS_PER_IP: { type: 'integer', minimum: 0, maximum: 10000000, default: 0, description: 'Open connections (WebSocket + MQTT) per client IP address across the cluster, counted before authentication; 0 = off (the default, because behind a load balancer or NAT the peer address is not the client).' },
  ORGHUB_LIMITS_ABUSE: { type: 'integer', minimum: 0, maximum: 100000000, default: 2000, description: 'Rate-limit refusals within 10 s, counted together with the WebSocket frames sent while the connection was held after a refusal, after which a connection is closed (WebSocket 4003, MQTT 5 DISCONNECT 0x96); 180 holds in a row (about 9 s over the limit) close it too; 0 = never (docs/operations.md "Limits").' },
  ORGHUB_LIMITS_PREFIX: { type: 'string', pattern: '^[A-Za-z0-9:_-]{1,64}$', default: 'orghub:lim:', description: 'Prefix of every Redis key of the limits (buckets, connection slots, node heartbeats); nodes of one cluster must share it.' },
  ORGHUB_LIMITS_LEASE_MS: { type: 'integer', minimum: 1, maximum: 10000, default: 100, description: 'Each node takes this many ms worth of a cluster-wide (user or org) bucket from Redis at a time and serves messages from it locally.' },
} as const;

type Settings = typeof settings;
type ValueOf<S> = S extends { type: 'integer' | 'number' } ? number : string;
export type Config = { readonly [K in keyof Settings]: ValueOf<Settings[K]> };

const schema = {
  type: 'object',
  properties: settings,
  additionalProperties: true,
} as const;

const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true });
const validate = ajv.compile(schema);

/**
 * Builds the config from an environment. Empty strings count as unset. Throws ConfigError naming
 * every variable at fault.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(settings)) {
    const v = env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  if (!validate(raw)) {
    const msgs = (validate.errors ?? []).map((e) => {
      const name = e.instancePath.replace(/^\//, '') || String(e.params?.missingProperty ?? '');
      return `${name} ${e.message}`;
    });
    throw new ConfigError(`invalid configuration: ${msgs.join('; ')}`);
  }
  const cfg = raw as unknown as Config;
  if (cfg.ORGHUB_JWT_HS256_SECRET && Buffer.byteLength(cfg.ORGHUB_JWT_HS256_SECRET) < 32) {
    throw new ConfigError('ORGHUB_JWT_HS256_SECRET must be at least 32 bytes');
  }
  if (!cfg.ORGHUB_JWT_JWKS && !cfg.ORGHUB_JWT_HS256_SECRET) {
    throw new ConfigError('ORGHUB_JWT_JWKS must name a JWKS file or URL (or set ORGHUB_JWT_HS256_SECRET for development)');
  }
  checkJwtSources(cfg);
  if (cfg.ORGHUB_CLUSTER_SECRET && Buffer.byteLength(cfg.ORGHUB_CLUSTER_SECRET) < 32) {
    throw new ConfigError('ORGHUB_CLUSTER_SECRET must be at least 32 bytes');
  }
  if (cfg.ORGHUB_APIKEY_PEPPER && Buffer.byteLength(cfg.ORGHUB_APIKEY_PEPPER) < 32) {
    throw new ConfigError('ORGHUB_APIKEY_PEPPER must be at least 32 bytes');
  }
  if (cfg.ORGHUB_ENV === 'production' && !cfg.ORGHUB_APIKEY_PEPPER) {
    throw new ConfigError('ORGHUB_APIKEY_PEPPER must be set when ORGHUB_ENV=production (API keys are stored as an HMAC under it)');
  }
  if (cfg.ORGHUB_ENV === 'production' && !cfg.ORGHUB_CLUSTER_SECRET) {
    throw new ConfigError('ORGHUB_CLUSTER_SECRET must be set when ORGHUB_ENV=production (it authenticates control messages between nodes)');
  }
  if (cfg.ORGHUB_ROLE_GRANTS) {
    try {
      JSON.parse(cfg.ORGHUB_ROLE_GRANTS);
    } catch {
      throw new ConfigError('ORGHUB_ROLE_GRANTS is not valid JSON');
    }
  }
  if (cfg.ORGHUB_OPS_PORT !== 0 && (cfg.ORGHUB_OPS_PORT === cfg.ORGHUB_PORT || cfg.ORGHUB_OPS_PORT === cfg.ORGHUB_MQTT_PORT)) {
    throw new ConfigError(`ORGHUB_OPS_PORT (${cfg.ORGHUB_OPS_PORT}) must differ from ORGHUB_PORT and ORGHUB_MQTT_PORT`);
  }
  parseTierOverrides(cfg.ORGHUB_LIMITS_TIERS);
  parseOrgOverrides(cfg.ORGHUB_LIMITS_ORGS);
  /** Whether the MQTT port was set explicitly (then a busy port is fatal). */
  return Object.freeze(cfg);
}

/** Loopback hosts, where a plain-http JWKS URL cannot be tampered with on the way. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** Start-time rules on where keys come from (docs/access.md "JWT hardening"). */
function checkJwtSources(cfg: Config): void {
  const jwks = cfg.ORGHUB_JWT_JWKS;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(jwks)) {
    let url: URL;
    try {
      url = new URL(jwks);
    } catch {
      throw new ConfigError('ORGHUB_JWT_JWKS is not a valid URL');
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.test(url.hostname))) {
      throw new ConfigError('ORGHUB_JWT_JWKS must be an https URL (plain http only on loopback) or a file path');
    }
  }
  if (jwks && cfg.ORGHUB_JWT_HS256_SECRET && cfg.ORGHUB_JWT_ALLOW_HS256_WITH_JWKS !== 'true') {
    throw new ConfigError('ORGHUB_JWT_HS256_SECRET is set next to ORGHUB_JWT_JWKS; unset it, or set ORGHUB_JWT_ALLOW_HS256_WITH_JWKS=true');
  }
  if (cfg.ORGHUB_ENV === 'production') {
    if (cfg.ORGHUB_JWT_ISSUER === settings.ORGHUB_JWT_ISSUER.default || cfg.ORGHUB_JWT_AUDIENCE === settings.ORGHUB_JWT_AUDIENCE.default) {
      throw new ConfigError(`ORGHUB_JWT_ISSUER and ORGHUB_JWT_AUDIENCE must be set to your identity provider's values when ORGHUB_ENV=production (not the development defaults "${settings.ORGHUB_JWT_ISSUER.default}" / "${settings.ORGHUB_JWT_AUDIENCE.default}")`);
    }
  }
}

/** True when the variable was given in the environment rather than defaulted. */
export function isExplicit(name: keyof Settings, env: NodeJS.ProcessEnv = process.env): boolean {
  return env[name] !== undefined && env[name] !== '';
}

/** The settings the projector process reads (it needs no JWT keys). */
const PROJECTOR_KEYS = ['DATABASE_URL', 'ORGHUB_LOG_LEVEL', 'ORGHUB_PROJECTOR_PROJECTIONS', 'ORGHUB_PROJECTOR_BATCH', 'ORGHUB_PROJECTOR_POLL_MS', 'ORGHUB_PROJECTOR_LOCK_POLL_MS', 'ORGHUB_PROJECTOR_RETENTION_INTERVAL_S', 'ORGHUB_PROJECTOR_RETENTION_BATCH'] as const;
export type ProjectorConfig = Pick<Config, (typeof PROJECTOR_KEYS)[number]>;
const validateProjector = ajv.compile({
  type: 'object',
  properties: Object.fromEntries(PROJECTOR_KEYS.map((k) => [k, settings[k]])),
  additionalProperties: true,
});

/** Like loadConfig, for `projections/main.ts`: only the projector's settings. */
export function loadProjectorConfig(env: NodeJS.ProcessEnv = process.env): ProjectorConfig {
  const raw: Record<string, unknown> = {};
  for (const key of PROJECTOR_KEYS) {
    const v = env[key];
    if (v !== undefined && v !== '') raw[key] = v;
  }
  if (!validateProjector(raw)) {
    const msgs = (validateProjector.errors ?? []).map((e) => `${e.instancePath.replace(/^\//, '')} ${e.message}`);
    throw new ConfigError(`invalid configuration: ${msgs.join('; ')}`);
  }
  return Object.freeze(raw as unknown as ProjectorConfig);
}
