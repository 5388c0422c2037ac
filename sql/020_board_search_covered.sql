-- 020: the board's order index also covers its filters and its search. `?q=` matches a
-- substring of the title, description or address (`LIKE '%…%'`), which no index can seek, so
-- the count and the page of a search read every open ticket: through 016's index that meant
-- fetching each ticket's row with its raw JSON (160 MB at 100 000 open tickets). With every
-- column the board's filters and its search test in the index, its count and pages read the
-- index alone (about 25 MB at 100 000). The order's columns come first, as in 016, so a page
-- still walks it in order. Only the open set is in it (every board query tests `open = 1`).
-- See "Board" in BENCHMARKS.md.
DROP INDEX tickets_board_order;
CREATE INDEX tickets_board_order ON tickets (
    open,
    (urgency = 'Kiireellinen') DESC,
    (latest IS NULL),
    julianday(latest),
    julianday(coalesce(remote_created, first_seen)),
    account,
    id,
    -- what the filters and the search test: covered, not looked up
    latest,
    state,
    urgency,
    remote_created,
    first_seen,
    title,
    description,
    address
) WHERE open = 1;
