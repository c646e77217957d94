-- Outputs (analysis folders, coding exports) registered before the latest participant withdrawal.
SELECT f.path, f.category, f.registered_at
FROM stored_files f
WHERE f.cluster_id = :cluster_id
  AND f.category IN ('analysis_output', 'qdpx_export')
  AND f.deleted_at IS NULL
  AND f.registered_at < (SELECT MAX(w.withdrawn_at) FROM qual_withdrawals w WHERE w.cluster_id = :cluster_id)
ORDER BY f.registered_at, f.path
