-- The one rule for "may this household be contacted": it has not withdrawn, its family is not
-- marked do-not-contact, it has not responded and no message to it ever bounced. Invitations,
-- reminders and the check just before each send all read this view (a plain view: portable
-- between SQLite and PostgreSQL, carrying cluster_id like every study table).

CREATE VIEW contactable_households AS
SELECT h.cluster_id, h.token, h.family_pid, h.wave, h.stratum, h.route
FROM households h
WHERE h.withdrawn_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM do_not_contact d
                  WHERE d.cluster_id = h.cluster_id AND d.family_pid = h.family_pid)
  AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.cluster_id = h.cluster_id AND r.token = h.token)
  AND NOT EXISTS (SELECT 1 FROM contact_attempts b
                  WHERE b.cluster_id = h.cluster_id AND b.token = h.token AND b.outcome = 'bounced');
