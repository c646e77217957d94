-- Ingest: indexes on the foreign keys that a later extract's replacement deletes cascade
-- through (a family's children and episodes, an episode's specialist referrals), so
-- replacing families does not scan whole tables per family.

CREATE INDEX IF NOT EXISTS children_family ON children (cluster_id, family_pid);
CREATE INDEX IF NOT EXISTS episodes_family ON episodes (cluster_id, family_pid);
CREATE INDEX IF NOT EXISTS specialist_referrals_episode ON specialist_referrals (cluster_id, episode_pid);
