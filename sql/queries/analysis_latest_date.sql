SELECT CAST(MAX(d) AS TEXT) AS latest_date
FROM (
  SELECT MAX(referral_date) AS d FROM episodes WHERE cluster_id = :cluster
  UNION ALL SELECT MAX(allocation_date) FROM episodes WHERE cluster_id = :cluster
  UNION ALL SELECT MAX(closure_date) FROM episodes WHERE cluster_id = :cluster
  UNION ALL SELECT MAX(latest_review_date) FROM goals WHERE cluster_id = :cluster
  UNION ALL SELECT MAX(start_date) FROM specialist_referrals WHERE cluster_id = :cluster
  UNION ALL SELECT MAX(end_date) FROM specialist_referrals WHERE cluster_id = :cluster
) dates
