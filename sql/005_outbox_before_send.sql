-- 005: what a ticket looked like just before our latest send of an action on it, so that an
-- in-doubt check can tell "provably unchanged" (safe to send again) from "changed while our
-- action was in flight" (ambiguous: dead-lettered for a dispatcher, never sent twice).
ALTER TABLE outbox ADD COLUMN before_state TEXT;     -- the ticket's state before the send (a transition)
ALTER TABLE outbox ADD COLUMN before_modified TEXT;  -- its Muokattu then, as received; NULL when Tampuuri did not tell
