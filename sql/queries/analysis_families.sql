SELECT f.family_pid, f.household_size, f.adults_in_employment, f.lead_carer_employment, f.lead_carer_ethnicity, CASE WHEN f.first_language_english IS NULL THEN NULL WHEN f.first_language_english THEN 1 ELSE 0 END AS first_language_english, CASE WHEN f.free_school_meals IS NULL THEN NULL WHEN f.free_school_meals THEN 1 ELSE 0 END AS free_school_meals, f.imd_decile
FROM families f
WHERE f.cluster_id = :cluster
  AND EXISTS (SELECT 1 FROM episodes e WHERE e.cluster_id = f.cluster_id AND e.family_pid = f.family_pid AND e.in_window)
ORDER BY f.family_pid
