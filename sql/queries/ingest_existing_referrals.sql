SELECT referral_pid AS pid FROM specialist_referrals WHERE cluster_id = :cluster_id
