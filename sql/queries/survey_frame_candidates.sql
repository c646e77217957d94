-- Every study-population family with the fields of its latest in-window episode (latest
-- referral_date, ties by the larger episode pseudonym) and whether it withdrew or was sampled.
WITH ranked AS (
    SELECT e.family_pid, e.primary_issue, e.referral_route,
           ROW_NUMBER() OVER (
               PARTITION BY e.family_pid ORDER BY e.referral_date DESC, e.episode_pid DESC
           ) AS rank_in_family
    FROM episodes e
    WHERE e.cluster_id = :cluster_id AND e.in_window
)
SELECT f.family_pid, r.primary_issue, r.referral_route, f.lead_carer_ethnicity, f.household_size,
       CASE WHEN d.family_pid IS NULL THEN 0 ELSE 1 END AS withdrawn,
       CASE WHEN h.family_pid IS NULL THEN 0 ELSE 1 END AS sampled
FROM families f
JOIN ranked r ON r.family_pid = f.family_pid AND r.rank_in_family = 1
LEFT JOIN do_not_contact d ON d.cluster_id = f.cluster_id AND d.family_pid = f.family_pid
LEFT JOIN households h ON h.cluster_id = f.cluster_id AND h.family_pid = f.family_pid
WHERE f.cluster_id = :cluster_id AND f.in_population
ORDER BY f.family_pid
