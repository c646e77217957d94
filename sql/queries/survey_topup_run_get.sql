-- The top-up run recorded by this flow run, if any (its wave, proposal and decision).
SELECT wave, requested_size, size, allocation, proposed_at, decision, decided_at
FROM topup_runs
WHERE cluster_id = :cluster_id AND flow_run_id = :flow_run_id
