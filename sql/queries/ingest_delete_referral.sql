DELETE FROM specialist_referrals WHERE cluster_id = :cluster_id AND referral_pid = :referral_pid
