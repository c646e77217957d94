DELETE FROM specialist_referrals WHERE cluster_id = :cluster_id AND referral_pid IN (SELECT k.pid FROM ingest_keys k WHERE k.kind = 'specialist_referrals')
