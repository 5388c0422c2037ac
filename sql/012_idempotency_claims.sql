-- An Idempotency-Key's claim can be taken over when the request that claimed it never answered
-- (its process was killed, or its client went away before the answer was kept).

-- Who holds the claim: a random id the claiming request chose. The answer is kept only by its
-- holder; for a queued action, in the transaction that queues it.
ALTER TABLE api_idempotency ADD COLUMN owner TEXT;
-- When the claim was made or last taken over (NULL: created_at, for rows from before this
-- migration). An unanswered claim older than the API's takeover bound is given to a retry.
ALTER TABLE api_idempotency ADD COLUMN claimed_at TEXT;
