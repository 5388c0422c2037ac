-- 014: a visit change that cannot be told to Tampuuri (the ticket left our open set, or is in
-- a state a hold cannot follow) is marked with why, instead of waiting to be told for ever.
-- A change is told (told_outbox_id) or not told (not_told), never both.
ALTER TABLE visit_changes ADD COLUMN not_told TEXT;
