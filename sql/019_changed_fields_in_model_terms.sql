-- 019: a history row names its changed fields in huoltosync's terms (`state`, `modified`,
-- `title`, ...), not in Tampuuri's (`Tila`, `Muokattu`, `Otsikko`, ...): the Tampuuri module
-- maps them as it parses (src/tampuuri/wire.rs, KNOWN_FIELDS). This renames the fields of the
-- rows written before, in `ticket_changes` and in the feed's `ticket.changed` and
-- `ticket.returned` events, in any key case as the parser reads them, sorted as the sync sorts
-- them. A field the model does not read keeps the name Tampuuri gave it.
CREATE TEMP TABLE field_names_019 (tampuuri TEXT PRIMARY KEY COLLATE NOCASE, model TEXT NOT NULL);
INSERT INTO field_names_019 (tampuuri, model) VALUES
    ('Id', 'id'),
    ('Tila', 'state'),
    ('Otsikko', 'title'),
    ('TyotehtavanKuvaus', 'description'),
    ('TyotehtavanLisatiedot', 'extra_info'),
    ('TyonsuorittajaId', 'assignee_id'),
    ('KustannuspaikkaId', 'cost_centre_id'),
    ('TilaId', 'space_id'),
    ('HuoneId', 'room_id'),
    ('ParentId', 'parent_id'),
    ('Kiireellisyys', 'urgency'),
    ('Sisaanpaasy', 'access'),
    ('Vikaluokka', 'fault_class'),
    ('SuoritusaikaAikaisintaan', 'earliest'),
    ('SuoritusaikaViimeistaan', 'latest'),
    ('Ilmoittaja', 'reporter'),
    ('Luotu', 'created'),
    ('Muokattu', 'modified'),
    ('Kohde', 'address');

UPDATE ticket_changes SET fields = (
    SELECT json_group_array(name) FROM (
        SELECT DISTINCT coalesce(n.model, f.value) AS name
          FROM json_each(ticket_changes.fields) f
          LEFT JOIN field_names_019 n ON n.tampuuri = f.value
         ORDER BY name))
 WHERE json_valid(fields) AND json_type(fields) = 'array';

UPDATE feed SET data = json_set(data, '$.fields', json((
    SELECT json_group_array(name) FROM (
        SELECT DISTINCT coalesce(n.model, f.value) AS name
          FROM json_each(feed.data, '$.fields') f
          LEFT JOIN field_names_019 n ON n.tampuuri = f.value
         ORDER BY name))))
 WHERE type IN ('ticket.changed', 'ticket.returned') AND json_valid(data)
   AND json_type(data, '$.fields') = 'array';

DROP TABLE field_names_019;
